import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import { isTrustedMsError } from '../../errors.js';
import { homeOfLab } from '../../lab/restart.js';
import { openUserAdmin } from '../../users/admin.js';
import { openRevocationAdmin } from '../../users/revocation-admin.js';
import type { Scenario, ScenarioContext, Verdict } from '../types.js';

interface Forgery {
  /** a user made for the scenario, revoked by the administrator, removed at revert */
  user: string;
  /** the gateway's process, held still so that it cannot confirm anything itself */
  gatewayPid?: number;
  stopped: boolean;
}

/**
 * Issue 13: `user revoke` says in how many parts the revocation is in force, from the parts'
 * confirmations; an attacker who polls the feed as the gateway, claiming a version far ahead, made
 * it report the gateway as having applied a revocation it never received.
 */
export const forgedConfirmation: Scenario = {
  id: 'revocation.forged-confirmation',
  title: 'A poll as the gateway makes a revocation count as in force where it is not',
  // A part of the lab spoofed, like a rogue service in place of a real one (the paper's attack 5).
  paperAttack: 5,
  technique: 'T1562',
  description:
    "The gateway is held still (SIGSTOP) so that it cannot apply or confirm anything, as if it were cut off. The attacker polls the security service's revocation feed without any credential, as the gateway (`?part=gateway`) and claiming a version far ahead. The administrator then revokes a user and reads how many parts confirmed. In none a part is whoever it says it is, so the forged poll counts; in paper a confirmation counts only with the part's own credential, in trusted only with its certificate on the control-plane listener, and the gateway is reported as not confirmed. Revert lets the gateway run again and removes the user.",
  evidence:
    "The revocation's propagation as `user revoke` reports it (succeeded when every listening part, the held gateway included, is counted as confirmed).",
  expected: { none: 'succeeded', paper: 'blocked', trusted: 'blocked' },
  onlyOn: {
    runtimes: ['process'],
    why: 'the gateway is held still with SIGSTOP, which needs its process on this host',
  },

  async setup(ctx) {
    const forgery: Forgery = { user: `revoked-${randomBytes(3).toString('hex')}`, stopped: false };
    ctx.scratch.forgery = forgery;
    const admin = await openUserAdmin(homeOfLab(ctx.lab));
    await admin.addUser({
      name: forgery.user,
      role: ctx.attacker.role,
      password: randomBytes(12).toString('hex'),
    });
  },

  async detonate(ctx) {
    const forgery = ctx.scratch.forgery as Forgery;
    const gateway = ctx.lab.parts.find((p) => p.kind === 'gateway');
    forgery.gatewayPid = gateway?.pid;
    if (forgery.gatewayPid === undefined) throw new Error('the gateway has no process to hold');
    process.kill(forgery.gatewayPid, 'SIGSTOP');
    forgery.stopped = true;
    // The gateway's poll in flight stays held at the security service, as the gateway's.
    const feed = `${ctx.lab.securityUrl}/v1/revocations`;
    const current = await request(feed, { dispatcher: ctx.client, headersTimeout: ctx.timeoutMs });
    const version = ((await current.body.json()) as { version?: string }).version ?? '';
    const epoch = version.split('.')[0];
    const forged = await request(`${feed}?since=${epoch}.999999&part=gateway`, {
      dispatcher: ctx.client,
      headersTimeout: ctx.timeoutMs,
    });
    await forged.body.dump();
    ctx.evidence.attempts.push({
      action: 'poll the revocation feed as the gateway, without a credential, claiming a version far ahead',
      target: `GET ${feed}`,
      status: forged.statusCode,
      gotData: false,
      note: 'the attack is judged by the next revocation',
    });
    const revoked = await (await openRevocationAdmin(homeOfLab(ctx.lab))).revokeUser(forgery.user);
    const p = revoked.propagation;
    ctx.evidence.measurements = { parts: p?.parts ?? 0, confirmed: p?.confirmed ?? 0 };
    if (p === undefined || p.parts === 0) {
      ctx.evidence.inconclusive =
        'no part was listening when the revocation was published (the gateway held no poll)';
    }
    ctx.evidence.attempts.push({
      action: 'the administrator revokes a user while the gateway is held still',
      target: `POST ${ctx.lab.securityUrl}/v1/admin/users/${forgery.user}/revoke`,
      // Every listening part counted, the gateway that never saw the change among them.
      gotData: p !== undefined && p.parts > 0 && p.confirmed === p.parts,
      note: `in force at ${p?.confirmed ?? 0} of ${p?.parts ?? 0} listening parts`,
    });
    process.kill(forgery.gatewayPid, 'SIGCONT');
    forgery.stopped = false;
  },

  judge(ctx: ScenarioContext): Verdict {
    if (ctx.evidence.inconclusive) return 'inconclusive';
    return ctx.evidence.attempts.some((a) => a.gotData) ? 'succeeded' : 'blocked';
  },

  async revert(ctx) {
    const forgery = ctx.scratch.forgery as Forgery | undefined;
    if (forgery === undefined) return;
    if (forgery.stopped && forgery.gatewayPid !== undefined) {
      try {
        process.kill(forgery.gatewayPid, 'SIGCONT');
      } catch {
        // gone: the watchman brings it back
      }
    }
    const admin = await openUserAdmin(homeOfLab(ctx.lab));
    await admin.removeUser(forgery.user).catch((err: unknown) => {
      if (!(isTrustedMsError(err) && err.code === 'USER_NOT_FOUND')) throw err;
    });
    ctx.scratch.forgery = undefined;
  },
};
