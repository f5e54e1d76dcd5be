import { BlockList, isIPv4 } from 'node:net';
import { networkInterfaces } from 'node:os';
import { Agent, buildConnector, type Dispatcher, request } from 'undici';
import { TrustedMsError } from '../errors.js';
import { type EdgeView, edgeCaPem, edgeConnectOptions, edgeEndClock } from '../kernel/edge-client.js';
import { inContainers, type LabState } from '../kernel/lab-state.js';
import type { Attempt, ScenarioContext } from './types.js';

const LOOPBACK = /^127\.0\.0\.(\d{1,3})$/;

/**
 * Scenarios talk only to the lab's own addresses: loopback, or a container's address or name on
 * the lab's own Docker network (as the lab state records it). Anything else is a bug, refused here.
 */
export function assertLabAddress(url: string, lab?: LabState): URL {
  const u = new URL(url);
  if (lab?.parts.some((p) => p.directUrl !== undefined && new URL(p.directUrl).host === u.host)) return u;
  // A part's own address as the lab's parts reach it (a container's name on the lab network).
  if (
    lab !== undefined &&
    inContainers(lab.runtime) &&
    lab.parts.some((p) => p.url.startsWith('http') && new URL(p.url).host === u.host)
  )
    return u;
  const m = LOOPBACK.exec(u.hostname);
  if (m === null || Number(m[1]) > 255) {
    throw new TrustedMsError('INVALID_INPUT', `attack traffic may only go to 127.0.0.x, not ${u.host}`);
  }
  return u;
}

/**
 * For a program in one of the lab's containers (the attacker's flood, the load clients), whose only
 * network is the lab's own: `url` must be an address on that network, i.e. in the subnet of one of
 * the container's own interfaces (loopback aside). Returns it, with the container's own address on
 * that network (where the lab sees its requests come from).
 */
export function assertOwnNetwork(url: string): { url: URL; from: string } {
  const u = new URL(url);
  if (isIPv4(u.hostname)) {
    for (const addrs of Object.values(networkInterfaces())) {
      for (const a of addrs ?? []) {
        if (a.internal || a.family !== 'IPv4' || a.cidr === null) continue;
        const net = new BlockList();
        net.addSubnet(a.address, Number(a.cidr.split('/')[1]), 'ipv4');
        if (net.check(u.hostname, 'ipv4')) return { url: u, from: a.address };
      }
    }
  }
  throw new TrustedMsError('INVALID_INPUT', `${u.host} is not an address on this container's own network`);
}

export interface AttemptRequest {
  action: string;
  url: string;
  method?: Dispatcher.HttpMethod;
  headers?: Record<string, string>;
  body?: string;
  dispatcher?: Dispatcher;
  /** the attack got what it was after when a 2xx body contains this text */
  marker: string;
}

/** Sends one attacker request (bounded by ctx.timeoutMs) and records what came back as evidence. */
export async function attempt(ctx: ScenarioContext, req: AttemptRequest): Promise<Attempt> {
  const u = assertLabAddress(req.url, ctx.lab);
  const target = `${req.method ?? (req.body === undefined ? 'GET' : 'POST')} ${u.origin}${u.pathname}`;
  let result: Attempt;
  try {
    const res = await request(u, {
      method: req.method ?? (req.body === undefined ? 'GET' : 'POST'),
      headers: {
        ...(req.body === undefined ? {} : { 'content-type': 'application/json' }),
        ...req.headers,
      },
      ...(req.body === undefined ? {} : { body: req.body }),
      headersTimeout: ctx.timeoutMs,
      bodyTimeout: ctx.timeoutMs,
      ...(req.dispatcher ? { dispatcher: req.dispatcher } : {}),
    });
    const text = await res.body.text();
    const code = codeOf(text);
    const ok = res.statusCode >= 200 && res.statusCode < 300;
    result = {
      action: req.action,
      target,
      status: res.statusCode,
      ...(code === undefined ? {} : { code }),
      gotData: ok && text.includes(req.marker),
    };
  } catch (err) {
    // No answer at all (e.g. a TLS handshake refused for want of a certificate) is a refusal too.
    const code = (err as { code?: unknown }).code;
    result = {
      action: req.action,
      target,
      code: typeof code === 'string' ? code : 'NO_ANSWER',
      gotData: false,
      note: String((err as Error).message ?? err).slice(0, 160),
    };
  }
  ctx.evidence.attempts.push(result);
  return result;
}

/** Records a step that failed before any request could be made (e.g. a login the lab refused). */
export function refusedStep(ctx: ScenarioContext, action: string, target: string, err: unknown): Attempt {
  const code = (err as { code?: unknown }).code;
  const a: Attempt = {
    action,
    target,
    code: typeof code === 'string' ? code : 'ERROR',
    gotData: false,
    note: String((err as Error).message ?? err).slice(0, 160),
  };
  ctx.evidence.attempts.push(a);
  return a;
}

/** The lab's refusal code in an answer's body, when it has one (at most 64 characters). */
export function codeOf(text: string): string | undefined {
  try {
    const c = (JSON.parse(text) as { code?: unknown } | null)?.code;
    return typeof c === 'string' ? c.slice(0, 64) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The attacker's own HTTP client: a separate connection pool, bound on Linux to another loopback
 * address (127.0.0.2, or `address`: an attacker with many sources) so that the lab sees a
 * different client than the victim's 127.0.0.1. With `lab` and edge:tls it speaks HTTPS to the
 * gateway as any client does, trusting the lab CA (a public certificate, like any web CA); its
 * connections to anything else are made as before.
 */
export function attackerClient(address = ATTACKER_ADDRESS, lab?: EdgeView): Agent {
  const ca = lab === undefined ? undefined : edgeCaPem(lab);
  const gateway = ca === undefined || lab === undefined ? undefined : new URL(lab.gatewayUrl).host;
  // TLS options are the connector's own (undici passes a connection only its address).
  const connector = buildConnector({});
  const toGateway =
    ca === undefined || lab === undefined
      ? connector
      : buildConnector(edgeConnectOptions(ca, undefined, edgeEndClock(lab)));
  const bind = process.platform === 'linux';
  return new Agent({
    connections: 8,
    connect: (opts, callback) =>
      (`${opts.hostname}:${opts.port}` === gateway ? toGateway : connector)(
        // Bound to 127.0.0.2 only towards loopback: a container's address is not reachable from it.
        { ...opts, ...(bind && LOOPBACK.test(opts.hostname) ? { localAddress: address } : {}) },
        callback,
      ),
  });
}

export const ATTACKER_ADDRESS = '127.0.0.2';
