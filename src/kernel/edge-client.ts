import { readFileSync } from 'node:fs';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import type { Dispatcher } from 'undici';
import { errnoCode, isTrustedMsError, TrustedMsError } from '../errors.js';
import { type JsonRequest, jsonRequest } from './http-client.js';
import type { LabState } from './lab-state.js';
import { isTlsFailure } from './tls-failure.js';

/** What a client of the gateway needs to know to reach its edge (edge:tls: HTTPS, and the CA to check it with). */
export type EdgeView = Pick<LabState, 'gatewayUrl' | 'caFile'>;

/**
 * `connect` options for a client of the gateway's HTTPS (edge:tls): the lab CA as the only trust
 * anchor, and the usual host check (the certificate names 127.0.0.1 and localhost). The system's
 * CAs are not trusted here: nobody else issues for a lab's gateway.
 */
export function edgeConnectOptions(
  caPem: string,
  /**
   * the name to expect in the certificate instead of the URL's host: a client container reaches
   * the gateway at its address on the edge network, which no certificate names
   */
  expectedName?: string,
): EdgeConnectOptions {
  return {
    ca: caPem,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2',
    ...(expectedName === undefined
      ? {}
      : {
          servername: expectedName,
          checkServerIdentity: (_host: string, cert: PeerCertificate) =>
            checkServerIdentity(expectedName, cert),
        }),
  };
}

export interface EdgeConnectOptions {
  ca: string;
  rejectUnauthorized: true;
  minVersion: 'TLSv1.2';
  servername?: string;
  checkServerIdentity?: (host: string, cert: PeerCertificate) => Error | undefined;
}

/** The connect options of a client of this gateway: the lab CA's for HTTPS, undefined for HTTP. */
export function edgeConnectFor(lab: EdgeView): EdgeConnectOptions | undefined {
  const ca = edgeCaPem(lab);
  return ca === undefined ? undefined : edgeConnectOptions(ca);
}

/** The lab CA's PEM for a client of this gateway; undefined for an HTTP edge. */
export function edgeCaPem(lab: EdgeView): string | undefined {
  if (!lab.gatewayUrl.startsWith('https:')) return undefined;
  if (lab.caFile === undefined) throw untrusted(lab.gatewayUrl, 'no lab CA file is known for it');
  try {
    return readFileSync(lab.caFile, 'utf8');
  } catch (err) {
    throw untrusted(
      lab.gatewayUrl,
      `the lab CA file ${lab.caFile} cannot be read (${errnoCode(err) ?? 'error'})`,
    );
  }
}

/**
 * Makes every request of this process that names no dispatcher of its own trust the lab CA for
 * the gateway's HTTPS: the CLI's commands (`user login`, `call`, the attack scenarios) reach the
 * gateway through undici's global dispatcher. Nothing to do for an HTTP edge.
 */
export async function trustLabEdge(lab: EdgeView): Promise<void> {
  const ca = edgeCaPem(lab);
  if (ca === undefined || ca === globallyTrusted) return;
  // Loaded here, not at the top: undici costs ~0.1-0.2 s of a CLI command's start (http-client.ts).
  const { Agent, getGlobalDispatcher, setGlobalDispatcher } = await import('undici');
  const before = getGlobalDispatcher();
  setGlobalDispatcher(new Agent({ connect: edgeConnectOptions(ca) }));
  globallyTrusted = ca;
  // The one it replaces finishes what it has in flight and goes (a run of labs, one CA each).
  void before.close().catch(() => undefined);
}

/** The lab CA the global dispatcher trusts now (set by trustLabEdge): once per CA, not per call. */
let globallyTrusted: string | undefined;

/** An agent of its own for a client of the gateway (a load's virtual users), or undefined for HTTP. */
export async function edgeAgent(lab: EdgeView): Promise<Dispatcher | undefined> {
  const ca = edgeCaPem(lab);
  if (ca === undefined) return undefined;
  const { Agent } = await import('undici');
  return new Agent({ connect: edgeConnectOptions(ca) });
}

/**
 * A request to the gateway that failed in its TLS handshake, as EDGE_CERTIFICATE_UNTRUSTED: the
 * server did not prove to be the lab's gateway (a certificate from another CA, for another name,
 * or none: plain HTTP), or this client was not given the lab CA. Anything else comes back as it was.
 */
export function asEdgeFailure(err: unknown, gatewayUrl: string): unknown {
  // An answer of the gateway's (a refusal it sent, whatever its code) is not a handshake that failed.
  if (isTrustedMsError(err) && err.code !== 'SERVICE_UNAVAILABLE') return err;
  if (!isTlsFailure(err)) return err;
  const reason = tlsReason(err);
  return untrusted(gatewayUrl, reason, err);
}

/** A JSON request to the gateway (`path` on `gatewayUrl`), its TLS failures as EDGE_CERTIFICATE_UNTRUSTED. */
export async function gatewayRequest<T>(
  gatewayUrl: string,
  path: string,
  opts: JsonRequest = {},
): Promise<T> {
  try {
    return await jsonRequest<T>(`${gatewayUrl}${path}`, opts);
  } catch (err) {
    throw asEdgeFailure(err, gatewayUrl);
  }
}

function untrusted(gatewayUrl: string, reason: string, cause?: unknown): TrustedMsError {
  return new TrustedMsError(
    'EDGE_CERTIFICATE_UNTRUSTED',
    `the gateway at ${new URL(gatewayUrl).origin} did not prove itself with the lab CA: ${reason}`,
    {
      actions: [
        'check the gateway with the CA file `trusted-ms lab up` printed (`trusted-ms lab status --json`: caFile)',
        `curl --cacert <caFile> ${new URL(gatewayUrl).origin}/healthz`,
      ],
      ...(cause === undefined ? {} : { cause }),
    },
  );
}

function tlsReason(err: unknown): string {
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 4; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && code !== 'SERVICE_UNAVAILABLE') return code;
    e = (e as { cause?: unknown }).cause;
  }
  return 'TLS handshake failed';
}
