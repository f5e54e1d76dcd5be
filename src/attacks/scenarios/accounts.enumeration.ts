import { randomBytes, randomInt } from 'node:crypto';
import bcrypt from 'bcryptjs';
import type { Dispatcher } from 'undici';
import { inContainers } from '../../kernel/lab-state.js';
import { openUserAdmin } from '../../users/admin.js';
import { ATTACKER_ADDRESS, attackerClient } from '../http.js';
import { labHome } from '../lab-home.js';
import { type PasswordAnswer, tryPassword } from '../password-attempt.js';
import { compareTimings, median, probabilityFaster, type TimingFinding } from '../timing.js';
import { byDefences, type Scenario, type ScenarioContext, type Verdict } from '../types.js';

/** Rounds of one try per kind of name, in a shuffled order each round. */
const ROUNDS = 24;
/** Wrong passwords from one source before the lock-out probe (the smart lock-out's free five). */
const LOCKOUT_PROBE_FAILURES = 5;
/** The imported user's bcrypt cost: what Apache's `htpasswd -B` writes by default. */
const IMPORTED_COST = 5;

type Kind = 'unknown' | 'scrypt' | 'bcrypt';
const KINDS: readonly Kind[] = ['unknown', 'scrypt', 'bcrypt'];

interface Scratch {
  imported: string;
  unknown: string;
  samples?: Record<Kind, PasswordAnswer[]>;
  /** the answer after LOCKOUT_PROBE_FAILURES failures, for the victim and for a made-up name */
  afterFailures?: { known: PasswordAnswer; unknown: PasswordAnswer };
}
const scratchOf = (ctx: ScenarioContext): Scratch => ctx.scratch as unknown as Scratch;

/**
 * Each round from a source of its own (127.0.1.x on Linux): one try per kind from it leaves every
 * (user, source) and every source far below any limit, so what is compared is the password check
 * itself. Elsewhere (or on Docker, whose port relay shows one address) the attacker's one client.
 */
function sourceOf(ctx: ScenarioContext, round: number): { client: Dispatcher; own: boolean } {
  if (process.platform !== 'linux' || inContainers(ctx.lab.runtime))
    return { client: ctx.client, own: false };
  return { client: attackerClient(`127.0.1.${1 + (round % 200)}`, ctx.lab), own: true };
}

const answerKey = (a: PasswordAnswer) => `${a.status ?? '-'} ${a.code} ${a.message}`;

/** An answer (code and message) seen at least 3 times for one kind and never for another. */
function codeLeak(samples: Record<Kind, PasswordAnswer[]>): string | undefined {
  const counts = KINDS.map((k) => {
    const m = new Map<string, number>();
    for (const a of samples[k]) m.set(answerKey(a), (m.get(answerKey(a)) ?? 0) + 1);
    return m;
  });
  for (const [i, m] of counts.entries()) {
    for (const [key, n] of m) {
      const missing = counts.findIndex((other) => !other.has(key));
      if (n >= 3 && missing !== -1) return `${KINDS[i]} answered "${key}" ${n}x, ${KINDS[missing]} never`;
    }
  }
  return undefined;
}

/** Only password verdicts are timed: a refusal before the check (a limit) says nothing of the name. */
const timed = (answers: PasswordAnswer[]) => answers.filter((a) => a.code === 'AUTH_FAILED').map((a) => a.ms);

export const enumeration: Scenario = {
  id: 'accounts.enumeration',
  title: 'Tell which user names exist from the login answers and their timing',
  paperAttack: 1,
  technique: 'T1589.001',
  description: `The attacker, without any password, sends wrong passwords through the gateway for three kinds of name, interleaved in ${ROUNDS} shuffled rounds (each round from a loopback address of its own on a process lab): a name that does not exist, the victim (a scrypt hash), and a user imported from an htpasswd file and not yet upgraded (bcrypt, cost ${IMPORTED_COST}, made in setup). It compares the answers (status, code, message) and their times. Then, from two more addresses, it sends ${LOCKOUT_PROBE_FAILURES} wrong passwords for the victim and for a made-up name and compares the next answer of each (a lock-out that only real users get tells names apart). Measured before the defence: an imported bcrypt user answered in ~4 ms, an unknown one in ~38 ms, and only real users were ever told ACCOUNT_LOCKED.`,
  evidence:
    'Succeeded when an answer (status, code and message) comes at least 3 times for one kind of name and never for another, or when the times of wrong-password answers differ clearly between a real kind and the unknown one: P(faster) of 0.9 or more (rank statistic over all pairs of samples) with medians at least 3 ms and 10% apart. Blocked when the answers are the same and every comparison is within 0.25-0.75 on at least 16 timed samples per kind. Anything between, or too few timed samples (a limit refused the tries), is inconclusive, never blocked. Rules: src/attacks/timing.ts.',
  // The uniform password checks and the name-blind lock-out come with limits:on.
  expected: byDefences((d) => (d.limits === 'on' ? 'blocked' : 'succeeded')),
  onlyOn: {
    runtimes: ['process'],
    why: "the attacker's tries must come from several addresses of its own (127.0.0.x here); on Docker the engine's port relay shows every host client at one address, and attacker containers at several edge addresses are not built yet",
  },

  async setup(ctx) {
    const imported = `tms-enum-imported-${randomBytes(3).toString('hex')}`;
    const scratch: Scratch = { imported, unknown: `tms-enum-nobody-${randomBytes(3).toString('hex')}` };
    Object.assign(ctx.scratch, scratch);
    const hash = bcrypt
      .hashSync(randomBytes(12).toString('base64url'), IMPORTED_COST)
      .replace(/^\$2b\$/, '$2y$');
    const admin = await openUserAdmin(await labHome(ctx.lab));
    await admin.importHtpasswd(`${imported}:${hash}\n`, 'analyst');
  },

  async detonate(ctx) {
    const s = scratchOf(ctx);
    const names: Record<Kind, string> = { unknown: s.unknown, scrypt: ctx.victim.name, bcrypt: s.imported };
    const samples: Record<Kind, PasswordAnswer[]> = { unknown: [], scrypt: [], bcrypt: [] };
    const wrong = () => `wrong-${randomBytes(6).toString('base64url')}`;
    for (let round = 0; round < ROUNDS; round++) {
      const order = [...KINDS];
      for (let i = order.length - 1; i > 0; i--) {
        const j = randomInt(i + 1);
        [order[i], order[j]] = [order[j] as Kind, order[i] as Kind];
      }
      const { client, own } = sourceOf(ctx, round);
      try {
        for (const k of order) samples[k].push(await tryPassword(ctx, names[k], wrong(), client));
      } finally {
        if (own) await client.close().catch(() => undefined);
      }
    }
    s.samples = samples;

    const probe = async (name: string, address: string): Promise<PasswordAnswer> => {
      const own = process.platform === 'linux' && !inContainers(ctx.lab.runtime);
      const client = own ? attackerClient(address, ctx.lab) : ctx.client;
      try {
        for (let i = 0; i < LOCKOUT_PROBE_FAILURES; i++) await tryPassword(ctx, name, wrong(), client);
        return await tryPassword(ctx, name, wrong(), client);
      } finally {
        if (own) await client.close().catch(() => undefined);
      }
    };
    s.afterFailures = {
      known: await probe(ctx.victim.name, '127.0.1.251'),
      unknown: await probe(s.unknown, inContainers(ctx.lab.runtime) ? ATTACKER_ADDRESS : '127.0.1.252'),
    };

    for (const k of KINDS) {
      const t = timed(samples[k]);
      const answers = [...new Set(samples[k].map(answerKey))].join('; ');
      ctx.evidence.attempts.push({
        action: `${ROUNDS} wrong passwords for ${k === 'unknown' ? 'a name that does not exist' : k === 'scrypt' ? 'the victim (scrypt)' : 'an imported user (bcrypt)'}`,
        target: `${ctx.lab.gatewayUrl}${ctx.defences.login === 'basic' ? '/auth/basic' : '/v1/auth/challenge'}`,
        ...(samples[k][0]?.status === undefined ? {} : { status: samples[k][0]?.status as number }),
        code: samples[k][0]?.code ?? 'NO_ANSWER',
        gotData: false,
        note: `answers: ${answers}; ${t.length} timed, median ${median(t).toFixed(1)} ms`,
      });
    }
    for (const [who, a] of Object.entries(s.afterFailures)) {
      ctx.evidence.attempts.push({
        action: `one more wrong password for the ${who === 'known' ? 'victim' : 'made-up name'} after ${LOCKOUT_PROBE_FAILURES} from the same address`,
        target: `${ctx.lab.gatewayUrl}`,
        ...(a.status === undefined ? {} : { status: a.status }),
        code: a.code,
        gotData: false,
      });
    }
    const m: Record<string, number> = {};
    const unknownTimes = timed(samples.unknown);
    for (const k of KINDS) m[`median_ms_${k}`] = Number(median(timed(samples[k])).toFixed(2));
    for (const k of ['scrypt', 'bcrypt'] as const) {
      m[`p_faster_${k}_than_unknown`] = Number(probabilityFaster(timed(samples[k]), unknownTimes).toFixed(3));
    }
    ctx.evidence.measurements = m;
  },

  judge(ctx): Verdict {
    const s = scratchOf(ctx);
    if (s.samples === undefined || s.afterFailures === undefined) {
      ctx.evidence.inconclusive = 'the tries did not complete';
      return 'inconclusive';
    }
    const leak = codeLeak(s.samples);
    const { known, unknown } = s.afterFailures;
    if (leak !== undefined || answerKey(known) !== answerKey(unknown)) return 'succeeded';
    const findings: TimingFinding[] = (['scrypt', 'bcrypt'] as const).map((k) =>
      compareTimings(timed(s.samples?.[k] ?? []), timed(s.samples?.unknown ?? [])),
    );
    if (findings.includes('different')) return 'succeeded';
    if (findings.every((f) => f === 'same')) return 'blocked';
    ctx.evidence.inconclusive = `the timing comparison is not clear-cut (${findings.join(', ')}), or too few tries were answered with a password verdict`;
    return 'inconclusive';
  },

  async revert(ctx) {
    const s = scratchOf(ctx);
    if (s.imported === undefined) return;
    const admin = await openUserAdmin(await labHome(ctx.lab));
    await admin.removeUser(s.imported).catch(() => undefined);
  },
};
