import { randomBytes } from 'node:crypto';
import { login } from '../../client/login.js';
import { inContainers } from '../../kernel/lab-state.js';
import { ATTACKER_ADDRESS, attackerClient } from '../http.js';
import { type PasswordAnswer, tryPassword } from '../password-attempt.js';
import { byDefences, type Scenario, type ScenarioContext, type Verdict } from '../types.js';

/** The attacker's addresses on a process lab (its own, and two more), each sending WRONG_PER_SOURCE. */
const SOURCES = [ATTACKER_ADDRESS, '127.0.0.3', '127.0.0.4'];
/** Wrong passwords per source: well past any lock-out's threshold (the old per-account one was 5). */
const WRONG_PER_SOURCE = 20;
/** Answers that mean the lab heard the attempt and refused it (the attack was delivered). */
const HEARD = new Set(['AUTH_FAILED', 'ACCOUNT_LOCKED', 'RATE_LIMITED']);
/** Refusals of the victim that a lock-out causes. */
const LOCKED_OUT = new Set(['ACCOUNT_LOCKED', 'RATE_LIMITED']);

interface Scratch {
  answers?: PasswordAnswer[];
  victim?: { ok: true } | { ok: false; code: string; message: string };
}
const scratchOf = (ctx: ScenarioContext): Scratch => ctx.scratch as Scratch;

export const lockoutDos: Scenario = {
  id: 'accounts.lockout-dos',
  title: "Lock the victim out of its account with wrong passwords from the attacker's addresses",
  paperAttack: 3,
  technique: 'T1531',
  description: `The attacker does not know the victim's password; it wants the victim unable to log in. From its own addresses (${SOURCES.join(', ')} on a process lab; its one client on Docker) it sends ${WRONG_PER_SOURCE} wrong passwords for the victim each, through the gateway, then the victim logs in as always from 127.0.0.1 with its password and its key. Measured before smart lock-out: 60 wrong passwords from one address locked the account (423 ACCOUNT_LOCKED) for the real user at any address. Without limits there is no lock-out to turn against the victim (the price is unthrottled guessing, which this scenario does not judge).`,
  evidence:
    "Succeeded when the victim's own login is refused ACCOUNT_LOCKED or RATE_LIMITED after the attacker's tries; blocked when it logs in; inconclusive when the victim's login fails for another reason or fewer than half the attacker's tries were answered at all (AUTH_FAILED, ACCOUNT_LOCKED or RATE_LIMITED).",
  // Smart lock-out (limits:on) never locks an account, and without it there is nothing to lock.
  expected: byDefences(() => 'blocked'),
  onlyOn: {
    runtimes: ['process'],
    why: "the attacker's tries must come from several addresses of its own (127.0.0.x here); on Docker the engine's port relay shows every host client at one address, and attacker containers at several edge addresses are not built yet",
  },

  async detonate(ctx) {
    const s = scratchOf(ctx);
    const own = process.platform === 'linux' && !inContainers(ctx.lab.runtime);
    const answers = await Promise.all(
      (own ? SOURCES : [ATTACKER_ADDRESS]).map(async (address) => {
        const client = own ? attackerClient(address, ctx.lab) : ctx.client;
        const mine: PasswordAnswer[] = [];
        try {
          for (let i = 0; i < WRONG_PER_SOURCE; i++) {
            mine.push(
              await tryPassword(
                ctx,
                ctx.victim.name,
                `wrong-${randomBytes(6).toString('base64url')}`,
                client,
              ),
            );
          }
        } finally {
          if (own) await client.close().catch(() => undefined);
        }
        return mine;
      }),
    );
    s.answers = answers.flat();
    const byCode = new Map<string, number>();
    for (const a of s.answers) byCode.set(a.code, (byCode.get(a.code) ?? 0) + 1);
    ctx.evidence.attempts.push({
      action: `${s.answers.length} wrong passwords for the victim from the attacker's addresses`,
      target: `${ctx.lab.gatewayUrl}${ctx.defences.login === 'basic' ? '/auth/basic' : '/v1/auth/challenge'}`,
      code: [...byCode].map(([c, n]) => `${c} x${n}`).join(', '),
      gotData: false,
    });

    try {
      await login(ctx.lab, ctx.victim.name, ctx.victim.password, ctx.victim.privateKey);
      s.victim = { ok: true };
      ctx.evidence.attempts.push({
        action: 'the victim logs in from its own address with its password and key',
        target: `${ctx.lab.gatewayUrl}/auth/*`,
        status: 200,
        gotData: false,
        note: 'logged in',
      });
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      s.victim = {
        ok: false,
        code: typeof code === 'string' ? code : 'ERROR',
        message: String((err as Error).message ?? err).slice(0, 160),
      };
      ctx.evidence.attempts.push({
        action: 'the victim logs in from its own address with its password and key',
        target: `${ctx.lab.gatewayUrl}/auth/*`,
        code: s.victim.code,
        gotData: false,
        note: s.victim.message,
      });
    }
    ctx.evidence.measurements = {
      attacker_tries: s.answers.length,
      attacker_tries_answered: s.answers.filter((a) => HEARD.has(a.code)).length,
      victim_logged_in: s.victim.ok ? 1 : 0,
    };
  },

  judge(ctx): Verdict {
    const { answers, victim } = scratchOf(ctx);
    if (answers === undefined || victim === undefined) {
      ctx.evidence.inconclusive = 'the attempts did not complete';
      return 'inconclusive';
    }
    if (!victim.ok && LOCKED_OUT.has(victim.code)) return 'succeeded';
    if (answers.filter((a) => HEARD.has(a.code)).length * 2 < answers.length) {
      ctx.evidence.inconclusive =
        "fewer than half the attacker's tries were answered: the attack was not delivered";
      return 'inconclusive';
    }
    if (victim.ok) return 'blocked';
    ctx.evidence.inconclusive = `the victim's login failed for another reason (${victim.code})`;
    return 'inconclusive';
  },
  // Nothing to undo: the lock-out of the attacker's own addresses is the defence working; it ends by itself.
};
