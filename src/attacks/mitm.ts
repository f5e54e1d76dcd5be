import { readFile } from 'node:fs/promises';
import { TrustedMsError } from '../errors.js';
import type { ServicePartConfig } from '../kernel/part-config.js';
import { restartService } from '../lab/restart.js';
import type { PartPlacement, Runtime } from '../lab/runtimes/runtime.js';
import { runtimeFor } from '../lab/runtimes/select.js';
import { createLabCa } from '../pki/ca.js';
import { issueServiceCertificate } from '../pki/identity.js';
import { assertLabAddress } from './http.js';
import { servicePart } from './plant.js';
import type { ProxyStats } from './proxy.js';
import { ProgramProxy, type ProgramProxyOptions, type ProxyView } from './proxy-program.js';
import type { Attempt, ScenarioContext, Verdict } from './types.js';

/**
 * The link the man in the middle sits on: customers calls accounts (its `/overview` reads the
 * accounts database with the user's credentials). The proxy is put on the link the way DNS or ARP
 * spoofing would: the caller's address for the callee now leads to the proxy, which relays to the
 * real callee. The gateway's own link
 * to accounts stays direct, which is how a scenario reads what accounts really holds.
 */
export const LINK = { caller: 'customers', callee: 'accounts', database: 'accounts' } as const;

/** A record of the accounts database: the data crossing the link. */
export const LINK_MARKER = '"id":"acc-1"';

/** The proxy program's name in the lab (a container's name on Docker). */
const PROXY_NAME = 'mitm-proxy';

interface Inserted {
  proxy?: ProgramProxy;
  runtime?: Runtime;
  /** where the proxy listens: the same place for a proxy swapped in */
  placement?: PartPlacement;
  /** the caller's config before the proxy was put on its link */
  original?: ServicePartConfig;
}

function inserted(ctx: ScenarioContext): Inserted {
  ctx.scratch.mitm ??= {};
  return ctx.scratch.mitm as Inserted;
}

type ProxyChoice = Omit<ProgramProxyOptions, 'upstream'>;

/**
 * Starts the proxy and points the caller's link at it (restarting the caller). The proxy is a
 * program the lab's runtime runs where the services can reach it: a local process on loopback, or
 * a container on the lab's Docker network.
 */
export async function insertProxy(ctx: ScenarioContext, opts: ProxyChoice): Promise<ProxyView> {
  const state = inserted(ctx);
  const callee = assertLabAddress(servicePart(ctx, LINK.callee).url, ctx.lab);
  const runtime = await runtimeFor(ctx.lab.runtime, { labId: ctx.lab.labId, posture: ctx.lab.posture });
  state.runtime = runtime;
  const placement = (
    await runtime.place([
      { name: PROXY_NAME, kind: 'attacker', scheme: callee.protocol === 'https:' ? 'https' : 'http' },
    ])
  ).get(PROXY_NAME) as PartPlacement;
  state.placement = placement;
  state.proxy = await ProgramProxy.start(ctx.lab, runtime, placement, PROXY_NAME, {
    ...opts,
    upstream: { host: callee.hostname, port: Number(callee.port) },
  });
  const caller = servicePart(ctx, LINK.caller);
  const original = JSON.parse(await readFile(caller.configFile, 'utf8')) as ServicePartConfig;
  state.original = original;
  await restartService(ctx.lab, LINK.caller, {
    runtime,
    config: { ...original, peers: { ...original.peers, [LINK.callee]: placement.url } },
  });
  return state.proxy;
}

/** The proxy on the link now. */
export function currentProxy(ctx: ScenarioContext): ProxyView {
  const proxy = inserted(ctx).proxy;
  if (proxy === undefined) throw new TrustedMsError('INTERNAL', 'no proxy is on the link');
  return proxy;
}

/** Replaces the proxy by another at the same address (e.g. one that terminates TLS). */
export async function swapProxy(ctx: ScenarioContext, opts: ProxyChoice): Promise<ProxyView> {
  const state = inserted(ctx);
  const { runtime, placement } = state;
  if (runtime === undefined || placement === undefined)
    throw new TrustedMsError('INTERNAL', 'no proxy is on the link');
  const callee = assertLabAddress(servicePart(ctx, LINK.callee).url, ctx.lab);
  await state.proxy?.close();
  state.proxy = undefined;
  state.proxy = await ProgramProxy.start(ctx.lab, runtime, placement, PROXY_NAME, {
    ...opts,
    upstream: { host: callee.hostname, port: Number(callee.port) },
  });
  return state.proxy;
}

/** Takes the proxy off the link: the caller gets its own config back and is restarted. */
export async function removeProxy(ctx: ScenarioContext): Promise<void> {
  const state = ctx.scratch.mitm as Inserted | undefined;
  if (state === undefined) return;
  try {
    await state.proxy?.close();
  } finally {
    // The caller gets its own link back even when the proxy would not close cleanly.
    if (state.original) {
      await restartService(ctx.lab, LINK.caller, {
        config: state.original,
        ...(state.runtime ? { runtime: state.runtime } : {}),
      });
    }
    ctx.scratch.mitm = undefined;
  }
}

/** A certificate naming the callee, from the attacker's own CA (the lab's CA never signed it). */
export async function attackerCertificate(
  ctx: ScenarioContext,
  name: string,
): Promise<{ certPem: string; keyPem: string }> {
  const ca = await createLabCa({ labId: ctx.lab.labId });
  const identity = await issueServiceCertificate(ca, { name });
  return { certPem: identity.certPem, keyPem: identity.keyPem };
}

/** What the proxy saw, as evidence: `gotData` when the marker was readable in the relayed bytes. */
export async function proxyEvidence(
  ctx: ScenarioContext,
  proxy: ProxyView,
  marker: string,
  how: string,
): Promise<Attempt> {
  await proxy.settled?.();
  const seen = Buffer.concat([proxy.bytesUp(), proxy.bytesDown()]);
  const s = proxy.stats();
  const attempt: Attempt = {
    action: `read the data in the bytes relayed on ${LINK.caller} → ${LINK.callee} (${how})`,
    target: `tcp://${proxyAddress(ctx)}`,
    gotData: seen.includes(marker),
    note:
      `${s.connections} connection(s), ${s.bytesUp} B up, ${s.bytesDown} B down, ` +
      `${s.sawTls ? 'TLS' : 'plain HTTP'}${s.httpRewrites ? `, ${s.httpRewrites} answer(s) rewritten` : ''}` +
      `${s.tlsRecordsAltered ? `, ${s.tlsRecordsAltered} TLS record(s) altered` : ''}` +
      `${s.errors.length ? `; ${s.errors.slice(0, 2).join('; ')}` : ''}`,
  };
  ctx.evidence.attempts.push(attempt);
  recordLinkProbe(ctx, s);
  const m = ctx.evidence.measurements ?? {};
  ctx.evidence.measurements = {
    ...m,
    proxyBytesUp: (m.proxyBytesUp ?? 0) + s.bytesUp,
    proxyBytesDown: (m.proxyBytesDown ?? 0) + s.bytesDown,
  };
  return attempt;
}

/** What one look through a proxy on the link showed, for judgeLink. */
interface LinkProbe {
  connections: number;
  sawTls: boolean;
}

/** Keeps what the proxy saw for this look (in order: the first is the proxy as inserted). */
export function recordLinkProbe(ctx: ScenarioContext, s: ProxyStats): void {
  const probes = (ctx.scratch.linkProbes as LinkProbe[] | undefined) ?? [];
  probes.push({ connections: s.connections, sawTls: s.sawTls });
  ctx.scratch.linkProbes = probes;
}

/**
 * The verdict of an attack on the link: succeeded when any look read or changed the data; blocked
 * only with the link's protection as evidence (the first proxy relayed the caller's traffic and it
 * was TLS); otherwise inconclusive, with why. A plain link whose traffic the proxy relayed and did
 * not see through, or a proxy no traffic passed (a call that timed out on a busy machine), shows
 * an attack that was not carried out, not one that was stopped: the busy ablation matrix had
 * `mitm.tamper` "blocked" on a plain link once in five rounds, and issue 21's CI log a proxy that
 * relayed 0 bytes.
 */
export function judgeLink(ctx: ScenarioContext): Verdict {
  if (ctx.evidence.attempts.some((a) => a.gotData)) return 'succeeded';
  const first = (ctx.scratch.linkProbes as LinkProbe[] | undefined)?.[0];
  if (first === undefined || first.connections === 0) {
    ctx.evidence.inconclusive = `no traffic of ${LINK.caller} passed the proxy on its link to ${LINK.callee}: the attack was not carried out, so nothing was shown to stop it`;
    return 'inconclusive';
  }
  if (!first.sawTls) {
    ctx.evidence.inconclusive = `the link was plain HTTP and ${first.connections} connection(s) passed the proxy, yet it neither read nor changed the data: nothing on a plain link stops that, so the attack was not carried out rather than stopped`;
    return 'inconclusive';
  }
  return 'blocked';
}

/** host:port of the proxy on the link, for the evidence. */
export function proxyAddress(ctx: ScenarioContext): string {
  const url = inserted(ctx).placement?.url;
  return url ? new URL(url).host : 'the proxy';
}
