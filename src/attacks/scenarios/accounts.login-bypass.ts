import { randomBytes, randomInt } from 'node:crypto';
import { loginsOnlyFromGateway } from '../../defences/part-credentials.js';
import { inContainers } from '../../kernel/lab-state.js';
import { attackerClient } from '../http.js';
import { type PasswordAnswer, passwordStepUrl, tryPassword } from '../password-attempt.js';
import { byDefences, type Scenario, type ScenarioContext, type Verdict } from '../types.js';

/** Guesses sent past the gateway: more than the 10 failed steps the gateway lets one address have at once (limits:on). */
const GUESSES = 12;
/** A password spray's one guess, tried for every name. */
const SPRAYED = 'Winter2026!';
/** The security service checked the password: a guess that counted. */
const CHECKED = 'AUTH_FAILED';
/** The security service's own meters answered instead (its per-address rate, the smart lock-out). */
const METERED = new Set(['RATE_LIMITED', 'ACCOUNT_LOCKED']);

interface Scratch {
  answers?: PasswordAnswer[];
}
const scratchOf = (ctx: ScenarioContext): Scratch => ctx.scratch as Scratch;

export const loginBypass: Scenario = {
  id: 'accounts.login-bypass',
  title: "Guess passwords at the security service's own address, past the gateway's login meters",
  paperAttack: 3,
  technique: 'T1110.003',
  description: `The gateway meters logins per client address (limits:on: two steps in flight, 10 failed steps, then one a second, each refusal held 1 s) before it relays them; the security service also listens on a port of its own on the host. The attacker, from a loopback address of its own (a new one each run, 127.0.2.x on a process lab), sprays one common password over ${GUESSES} made-up names straight at that port: the first login step (the challenge; with HTTP basic the gateway's password check), one at a time, never through the gateway. Made-up names, so no real account's lock-out is touched. Measured before: 40 failures from one address in 1.6 s, answered AUTH_FAILED, none seen by the gateway. With links:mtls the security service takes the login steps only from the gateway's certificate on its control-plane listener and refuses them on the plain port (LOGIN_VIA_GATEWAY_ONLY). In none there is no login step there: the gateway checks passwords with the lab token, which the attacker has not.`,
  evidence:
    "The direct answers. Succeeded when at least half the guesses were checked by the security service (AUTH_FAILED: a password verdict no gateway meter saw); blocked when none was checked and every one was refused before any password check (a 4xx with another code than the security service's own meters, RATE_LIMITED or ACCOUNT_LOCKED); inconclusive otherwise (no answer, a 5xx, or its own meters answered most: the attempt says nothing about the route).",
  expected: byDefences((d) => (d.login === 'basic' || loginsOnlyFromGateway(d) ? 'blocked' : 'succeeded')),

  async detonate(ctx) {
    const s = scratchOf(ctx);
    // A fresh source each run: the smart lock-out remembers an address's failures for an hour, and
    // a second run from the same one would be answered by it rather than by the route under test.
    const own = process.platform === 'linux' && !inContainers(ctx.lab.runtime);
    const client = own ? attackerClient(`127.0.2.${1 + randomInt(250)}`, ctx.lab) : ctx.client;
    const spray = randomBytes(3).toString('hex');
    const answers: PasswordAnswer[] = [];
    try {
      for (let i = 0; i < GUESSES; i++) {
        answers.push(await tryPassword(ctx, `tms-spray-${spray}-${i}`, SPRAYED, client, 'security'));
      }
    } finally {
      if (own) await client.close().catch(() => undefined);
    }
    s.answers = answers;
    const byCode = new Map<string, number>();
    for (const a of answers) byCode.set(a.code, (byCode.get(a.code) ?? 0) + 1);
    const statuses = [...new Set(answers.map((a) => a.status ?? 0))].filter((x) => x > 0);
    ctx.evidence.attempts.push({
      action: `${answers.length} guesses of one password over made-up names, straight at the security service`,
      target: passwordStepUrl(ctx.lab, ctx.defences, 'security'),
      ...(statuses.length === 1 ? { status: statuses[0] as number } : {}),
      code: [...byCode].map(([c, n]) => `${c} x${n}`).join(', '),
      // What the attacker is after is a password verdict no meter saw: each AUTH_FAILED is one.
      gotData: answers.some((a) => a.code === CHECKED),
      note: answers[0]?.message ?? '',
    });
    ctx.evidence.measurements = {
      guesses: answers.length,
      checked_past_gateway: answers.filter((a) => a.code === CHECKED).length,
      metered_by_security: answers.filter((a) => METERED.has(a.code)).length,
      refused_before_check: answers.filter((a) => refusedBeforeCheck(a)).length,
      ms: Math.round(answers.reduce((sum, a) => sum + a.ms, 0)),
    };
  },

  judge(ctx): Verdict {
    const { answers } = scratchOf(ctx);
    if (answers === undefined || answers.length === 0) {
      ctx.evidence.inconclusive = 'the guesses were not sent';
      return 'inconclusive';
    }
    const checked = answers.filter((a) => a.code === CHECKED).length;
    if (checked * 2 >= answers.length) return 'succeeded';
    if (checked === 0 && answers.every(refusedBeforeCheck)) return 'blocked';
    ctx.evidence.inconclusive = `${checked} of ${answers.length} guesses checked, the others answered ${[
      ...new Set(answers.filter((a) => a.code !== CHECKED).map((a) => a.code)),
    ].join(', ')}`;
    return 'inconclusive';
  },
  // Nothing to undo: made-up names, and the attacker's address is its own for this run.
};

/** An answer that refused the guess before any password was checked: the route is not open to it. */
function refusedBeforeCheck(a: PasswordAnswer): boolean {
  return (
    a.status !== undefined && a.status >= 400 && a.status < 500 && a.code !== CHECKED && !METERED.has(a.code)
  );
}
