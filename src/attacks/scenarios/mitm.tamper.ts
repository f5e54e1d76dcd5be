import {
  attackerCertificate,
  currentProxy,
  insertProxy,
  judgeLink,
  LINK,
  proxyAddress,
  recordLinkProbe,
  removeProxy,
  swapProxy,
} from '../mitm.js';
import { victimCall, victimSession } from '../plant.js';
import type { ProxyView } from '../proxy-program.js';
import type { Scenario, ScenarioContext } from '../types.js';

const FORGED = { id: 'acc-forged', owner: 'mallory', status: 'active' };

/** The proxy on the customers → accounts link changes the answers in flight. */
export const mitmTamper: Scenario = {
  id: 'mitm.tamper',
  title: 'The proxy changes the data in flight',
  paperAttack: 6,
  technique: 'T1565',
  description:
    "The attacker's proxy on the link from customers to accounts rewrites what accounts sends back: in plain HTTP it adds a forged account to the records (fixing Content-Length); on a TLS link, where it cannot read anything, it flips a bit in each encrypted record accounts sends once the request has gone out. The victim asks customers for its overview, which counts the accounts records customers received; the scenario also reads the accounts database through the gateway, whose link to accounts is not intercepted. The paper has no integrity protection between services, so customers accepts the altered answer; in trusted the altered TLS record fails its authentication tag and customers gets no answer at all, and a proxy terminating TLS with the attacker's own certificate is refused at the handshake. Revert takes the proxy off the link.",
  evidence:
    "The number of accounts records customers says it received against the number accounts holds (read through the gateway), the status customers got from accounts, and what the proxy altered. Succeeded when customers accepted an answer that is not what accounts holds; blocked only when the traffic passed the proxy as TLS (the link's protection); inconclusive (run once more) when no traffic passed the proxy, or a plain link's did and nothing was changed (judgeLink in src/attacks/mitm.ts).",
  expected: { none: 'succeeded', paper: 'succeeded', trusted: 'blocked' },

  async setup(ctx) {
    await victimSession(ctx);
    await insertProxy(ctx, { tamper: true, forged: FORGED });
  },

  async detonate(ctx) {
    const real = await victimCall(
      ctx,
      LINK.callee,
      `/db/${LINK.database}/records`,
      'the victim reads the accounts database through the gateway (a link without the proxy)',
    );
    const holds = (real.body as { records?: unknown[] } | null)?.records?.length;
    ctx.scratch.holds = holds;
    await overviewThroughProxy(ctx, currentProxy(ctx), 'rewriting the answers it relays');
    if (ctx.defences.links === 'mtls') {
      const terminating = await swapProxy(ctx, {
        tamper: true,
        forged: FORGED,
        tls: await attackerCertificate(ctx, LINK.callee),
      });
      await overviewThroughProxy(
        ctx,
        terminating,
        'terminating TLS with its own certificate, then rewriting',
      );
    }
  },

  judge: judgeLink,
  revert: removeProxy,
};

/** Succeeded when customers accepted an answer from accounts that is not what accounts holds. */
async function overviewThroughProxy(ctx: ScenarioContext, proxy: ProxyView, how: string): Promise<void> {
  const holds = ctx.scratch.holds as number | undefined;
  const { body } = await victimCall(
    ctx,
    LINK.caller,
    '/overview',
    'the victim asks customers for its overview',
  );
  const got = (body as { peers?: Record<string, { status?: number; count?: number; code?: string }> } | null)
    ?.peers?.[LINK.callee];
  await proxy.settled?.();
  const s = proxy.stats();
  recordLinkProbe(ctx, s);
  ctx.evidence.attempts.push({
    action: `change the accounts answer customers receives (${how})`,
    target: `tcp://${proxyAddress(ctx)} proxy on ${LINK.caller} → ${LINK.callee}`,
    ...(got?.status === undefined ? {} : { status: got.status }),
    ...(got?.code === undefined ? {} : { code: got.code }),
    gotData: holds !== undefined && got?.status === 200 && got.count !== holds,
    note:
      `customers received ${got?.count ?? 'no'} record(s) from accounts, which holds ${holds ?? '?'}; ` +
      `proxy: ${s.sawTls ? 'TLS' : 'plain HTTP'}, ${s.httpRewrites} answer(s) rewritten, ` +
      `${s.tlsRecordsAltered} TLS record(s) altered${s.errors.length ? `; ${s.errors[0]}` : ''}`,
  });
}
