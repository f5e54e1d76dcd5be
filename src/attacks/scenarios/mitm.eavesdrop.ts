import {
  attackerCertificate,
  currentProxy,
  insertProxy,
  judgeLink,
  LINK,
  LINK_MARKER,
  proxyEvidence,
  removeProxy,
  swapProxy,
} from '../mitm.js';
import { victimCall, victimSession } from '../plant.js';
import type { Scenario } from '../types.js';

/** A recording proxy on the customers → accounts link reads what crosses it. */
export const eavesdrop: Scenario = {
  id: 'mitm.eavesdrop',
  title: 'A proxy on a service-to-service link reads the data',
  paperAttack: 6,
  technique: 'T1557',
  description:
    "The attacker puts a TCP proxy (src/attacks/proxy.ts) on the link from customers to accounts and records every byte it relays. The victim asks customers for its overview, which makes customers read the accounts database with the victim's credentials. The paper has no transport security between services (it leaves it as future work), so the records cross in plain HTTP; in trusted the link is mTLS and the proxy sees ciphertext only. In trusted the attacker also tries a proxy that terminates TLS itself with a certificate for accounts from its own CA: customers refuses it during the handshake. Revert takes the proxy off the link.",
  evidence:
    "The bytes the proxy relayed (succeeded when an accounts record is readable in them), and the status of the victim's overview. Blocked only when the traffic passed the proxy as TLS (the link's protection); inconclusive (run once more) when no traffic passed the proxy, or a plain link's did and no record was readable (judgeLink in src/attacks/mitm.ts).",
  expected: { none: 'succeeded', paper: 'succeeded', trusted: 'blocked' },

  async setup(ctx) {
    await victimSession(ctx);
    await insertProxy(ctx, {});
  },

  async detonate(ctx) {
    const proxy = currentProxy(ctx);
    await victimCall(
      ctx,
      LINK.caller,
      '/overview',
      'the victim asks customers for its overview (customers reads accounts)',
    );
    await proxyEvidence(ctx, proxy, LINK_MARKER, 'relaying the bytes as they are');
    if (ctx.defences.links === 'mtls') {
      const terminating = await swapProxy(ctx, { tls: await attackerCertificate(ctx, LINK.callee) });
      await victimCall(ctx, LINK.caller, '/overview', 'the victim asks for the overview again');
      await proxyEvidence(
        ctx,
        terminating,
        LINK_MARKER,
        'terminating TLS with its own certificate for accounts',
      );
    }
  },

  judge: judgeLink,
  revert: removeProxy,
};
