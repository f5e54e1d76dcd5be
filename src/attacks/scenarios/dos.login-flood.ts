import { login } from '../../client/login.js';
import { DOS_RULES, judgeFlood, measureUnderFlood, removeFloodLeftovers } from '../dos.js';
import { addFreshUsers, freshUsers, removeFreshUsers } from '../fresh-users.js';
import type { Scenario } from '../types.js';

/**
 * Users who log in once each (posture none): one to warm up before the flood and one after it, then
 * at most 8 before, 8 during and 8 after the flood; few, since each costs the lab a password hash
 * and a store write to create.
 */
const FRESH = { baseline: 8, during: 8, after: 8 } as const;
// Enough for two floods: a flood that bites is measured twice (measureUnderFlood).
const FRESH_USERS = 2 + 2 * (FRESH.baseline + FRESH.during + FRESH.after);

/** The attacker floods the login endpoint with wrong passwords while the victim keeps logging in. */
export const loginFlood: Scenario = {
  id: 'dos.login-flood',
  title: 'Flood the login endpoint while a legitimate user logs in',
  paperAttack: 3,
  technique: 'T1499',
  description:
    "From its own address (127.0.0.2 on a process lab; on Docker a container of its own on the lab's edge network) the attacker keeps 32 login attempts in flight through the gateway for 5 s (then waits at most 5 s for the answers still due), each a made-up user with a random wrong password, so each costs the lab a password hash and an audit write. Meanwhile legitimate users keep logging in from 127.0.0.1: the victim, or in none users who have not logged in yet (none caches a checked password for 60 s, so only arriving users need the checker there). None checks every credential with no limit. The paper's scheme is expected to fall too: it names DoS as its attack 3 but its framework (a password at the gateway, then the ticket) limits nothing. Trusted admits two login steps in flight per client address (the rest wait), refuses an address whose failed logins are spent (10, then 1 a second) before any hash, and the security service limits logins per client address as the gateway vouches for it.",
  evidence:
    "Counts, not speeds, where they can be: the legitimate logins' deadline is 3x their own median before the flood, in the same run. Succeeded when more than half the logins during the flood failed or missed it, the logins after the flood kept it (the lab was not slow anyway) and the flood was delivered, twice in a row (a flood that bites is measured again before it is believed); blocked when they kept it and a defence engaged for the attacker (its attempts refused 429, or held back to its address's two login steps in flight, which the gateway says on the answer); inconclusive, and run once more, when neither holds (e.g. the attacker was starved of CPU and its flood slowed no one while nothing limited it), or when the defence held back most of the flood and the victim still missed (what it let through was then too much for this machine at that moment: its capacity decided, not the attacker). Also the flood's answers by status. Rules: judgeFlood and DOS_RULES in src/attacks/dos.ts.",
  expected: { none: 'succeeded', paper: 'succeeded', trusted: 'blocked' },

  async setup(ctx) {
    if (ctx.defences.login !== 'basic') return;
    await addFreshUsers(ctx, 'tms-dos-user', FRESH_USERS);
  },

  async detonate(ctx) {
    const { lab, victim } = ctx;
    const fresh = freshUsers(ctx);
    let next = 0;
    await measureUnderFlood(ctx, {
      legitAction: fresh.length > 0 ? 'a user who has not logged in yet logs in' : 'the victim logs in',
      legitTarget: `${lab.gatewayUrl}/auth/*`,
      legit: async () => {
        if (fresh.length === 0) {
          await login(lab, victim.name, victim.password, victim.privateKey);
          return;
        }
        const u = fresh[next++];
        if (u === undefined) throw Object.assign(new Error('no fresh user left'), { code: 'NO_FRESH_USER' });
        await login(lab, u.name, u.password, undefined);
      },
      rule: DOS_RULES.login,
      ...(fresh.length > 0 ? { maxOps: FRESH } : {}),
      floodAction: 'login attempts as made-up users with wrong passwords',
      // 32 in flight: enough to keep every hashing thread of the security service busy.
      flood: {
        origin: lab.gatewayUrl,
        recipe: { kind: 'login', login: ctx.defences.login },
        concurrency: 32,
      },
    });
  },

  async revert(ctx) {
    await removeFloodLeftovers(ctx);
    await removeFreshUsers(ctx);
  },

  judge: judgeFlood(DOS_RULES.login),
};
