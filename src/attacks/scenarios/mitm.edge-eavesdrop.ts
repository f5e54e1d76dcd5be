import { login } from '../../client/login.js';
import { createLabCa } from '../../pki/ca.js';
import { issueServiceCertificate } from '../../pki/identity.js';
import { assertLabAddress, refusedStep } from '../http.js';
import { InterceptingProxy, type ProxyOptions } from '../proxy.js';
import type { Attempt, Scenario, ScenarioContext, Verdict } from '../types.js';

/**
 * What one look through the attacker's proxy showed: whether the victim's traffic passed it, and
 * whether as TLS. Kept in order: the first is the relaying proxy.
 */
export interface EdgeLook {
  connections: number;
  sawTls: boolean;
  /** the password, or the HTTP basic credential made of it, readable in the relayed bytes */
  readCredential: boolean;
  /** the victim's client went on with the login (false: it refused, at the handshake or after) */
  victimLoggedIn: boolean;
}

const looksOf = (ctx: ScenarioContext): EdgeLook[] => {
  ctx.scratch.edgeLooks ??= [];
  return ctx.scratch.edgeLooks as EdgeLook[];
};

/** The attacker's own certificate for the gateway's address, from a CA of its own (the lab CA never signed it). */
async function attackerEdgeCertificate(ctx: ScenarioContext): Promise<{ certPem: string; keyPem: string }> {
  const ca = await createLabCa({ labId: ctx.lab.labId });
  const id = await issueServiceCertificate(ca, {
    name: 'gateway',
    kind: 'gateway',
    serverNames: { dns: ['localhost'], ip: ['127.0.0.1'] },
  });
  return { certPem: id.certPem, keyPem: id.keyPem };
}

/**
 * The victim logs in through a proxy the attacker put on the client → gateway link (the victim's
 * address for the gateway now leads to the proxy, as a spoofed name or a hostile Wi-Fi would have
 * it), and the attacker looks for the password in the bytes relayed.
 */
async function lookThroughProxy(
  ctx: ScenarioContext,
  how: string,
  tls?: ProxyOptions['tls'],
): Promise<EdgeLook> {
  const gateway = assertLabAddress(ctx.lab.gatewayUrl, ctx.lab);
  const proxy = new InterceptingProxy({
    upstream: { host: gateway.hostname, port: Number(gateway.port) },
    lifetimeMs: 4 * ctx.timeoutMs,
    ...(tls ? { tls } : {}),
  });
  const port = await proxy.listen(0);
  // The victim's client as it is: same scheme, same trust (the lab CA, src/kernel/edge-client.ts),
  // only the address is the attacker's.
  const viaProxy = { ...ctx.lab, gatewayUrl: `${gateway.protocol}//127.0.0.1:${port}` };
  const { victim } = ctx;
  let victimLoggedIn = false;
  try {
    await login(viaProxy, victim.name, victim.password, victim.privateKey);
    victimLoggedIn = true;
  } catch (err) {
    refusedStep(ctx, `the victim logs in through the proxy (${how})`, `${viaProxy.gatewayUrl}/auth/*`, err);
  } finally {
    await proxy.close();
  }
  const seen = Buffer.concat([proxy.bytesUp(), proxy.bytesDown()]);
  const basic = Buffer.from(`${victim.name}:${victim.password}`).toString('base64');
  const readCredential = seen.includes(victim.password) || seen.includes(basic);
  const s = proxy.stats();
  const attempt: Attempt = {
    action: `read the victim's password in the bytes relayed on the client → gateway link (${how})`,
    target: `tcp://127.0.0.1:${port} → ${gateway.host}`,
    gotData: readCredential,
    note:
      `${s.connections} connection(s), ${s.bytesUp} B up, ${s.bytesDown} B down, ${s.sawTls ? 'TLS' : 'plain HTTP'}, ` +
      `the victim ${victimLoggedIn ? 'logged in' : 'did not log in'}${s.errors.length ? `; ${s.errors.slice(0, 2).join('; ')}` : ''}`,
  };
  ctx.evidence.attempts.push(attempt);
  const look = { connections: s.connections, sawTls: s.sawTls, readCredential, victimLoggedIn };
  looksOf(ctx).push(look);
  const m = ctx.evidence.measurements ?? {};
  ctx.evidence.measurements = {
    ...m,
    proxyBytesUp: (m.proxyBytesUp ?? 0) + s.bytesUp,
    proxyBytesDown: (m.proxyBytesDown ?? 0) + s.bytesDown,
  };
  return look;
}

/**
 * Succeeded when any look read the password (or a credential made of it) in clear; blocked when the
 * relay carried the victim's traffic as TLS and a proxy that terminated TLS itself got no login
 * (the client refused its certificate); otherwise inconclusive: no traffic passed the proxy, or a
 * plain link's did and nothing was read, which is an attack not carried out rather than one stopped.
 */
export function judgeEdgeEavesdrop(ctx: ScenarioContext): Verdict {
  const looks = looksOf(ctx);
  if (looks.some((l) => l.readCredential)) return 'succeeded';
  const [relay, terminating] = looks;
  if (relay === undefined || relay.connections === 0) {
    ctx.evidence.inconclusive =
      "none of the victim's traffic passed the proxy: the attack was not carried out, so nothing was shown to stop it";
    return 'inconclusive';
  }
  if (!relay.sawTls) {
    ctx.evidence.inconclusive = `the link was plain HTTP and ${relay.connections} connection(s) passed the proxy, yet the password was not in them: nothing on a plain link stops that`;
    return 'inconclusive';
  }
  if (terminating?.victimLoggedIn === true) {
    ctx.evidence.inconclusive =
      "the victim logged in through a proxy holding the attacker's own certificate, and the password was not found in what it relayed";
    return 'inconclusive';
  }
  return 'blocked';
}

/** A proxy on the users' link to the gateway reads a password. */
export const edgeEavesdrop: Scenario = {
  id: 'mitm.edge-eavesdrop',
  title: 'A proxy on the client → gateway link reads a password',
  paperAttack: 6,
  technique: 'T1557',
  description:
    "The attacker puts a TCP proxy (src/attacks/proxy.ts) between a user and the gateway: the victim's client reaches the proxy at the address it takes for the gateway, and the proxy relays to the real one. The victim logs in; the attacker reads the bytes. With HTTP at the edge (none, paper) the password crosses in clear: in the basic credentials (none) or the challenge request's body (paper, and trusted without edge:tls). With edge:tls the relay sees TLS records only; when it did, the attacker then terminates TLS itself with a certificate for 127.0.0.1 from its own CA, which the victim's client refuses (it trusts the lab CA only). The attack does not ask which posture it faces.",
  evidence:
    "The bytes the proxy relayed (succeeded when the victim's password, or the HTTP basic credential made of it, is readable in them), whether they were TLS, and whether the victim's client went on with the login through a proxy holding the attacker's certificate. Blocked only with TLS as evidence; inconclusive (run once more) when nothing passed the proxy (judgeEdgeEavesdrop).",
  expected: { none: 'succeeded', paper: 'succeeded', trusted: 'blocked' },

  async detonate(ctx) {
    const relay = await lookThroughProxy(ctx, 'relaying the bytes as they are');
    // Only TLS is worth terminating: decided on what the relay saw, not on the posture.
    if (relay.sawTls && !relay.readCredential) {
      await lookThroughProxy(
        ctx,
        "terminating TLS with the attacker's own certificate for 127.0.0.1",
        await attackerEdgeCertificate(ctx),
      );
    }
  },

  judge: judgeEdgeEavesdrop,
};
