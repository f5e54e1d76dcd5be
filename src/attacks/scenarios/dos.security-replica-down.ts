import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { login } from '../../client/login.js';
import { isTrustedMsError, TrustedMsError } from '../../errors.js';
import { type PartState, readLabState } from '../../kernel/lab-state.js';
import { addFreshUsers, freshUsers, removeFreshUsers } from '../fresh-users.js';
import { labHome } from '../lab-home.js';
import type { Scenario, ScenarioContext, Verdict } from '../types.js';

/** How long users keep logging in after the kill: the watchman's first restart waits 1 s. */
const OUTAGE_WINDOW_MS = 1000;
/** Between two logins of the victim, so that a fast refusal does not turn into a flood. */
const PAUSE_MS = 25;
/**
 * login:basic (none): the gateway caches a checked password for 60 s, so the victim logging in
 * again would measure that cache, not the security service: there each login is a user's first.
 */
const FRESH_USERS = 48;
/** How long the watchman may take to bring the killed replica back before the lab counts as not restored. */
const BACK_WITHIN_MS = 30_000;

interface Outage {
  killed: { name: string; pid: number };
  ok: number;
  failed: number;
  codes: Record<string, number>;
}

/**
 * One security service (replica) is killed (SIGKILL: no goodbye, connections dropped mid-answer)
 * while users log in. A lab of one security service stops every login until the watchman brings it
 * back; replicas on a shared store keep them going (issue 17). The expectation follows the lab's
 * replicas, not its defences: no posture's defence keeps logins alive when the only security
 * service is gone.
 */
export const securityReplicaDown: Scenario = {
  id: 'dos.security-replica-down',
  title: 'Kill a security service replica while users log in',
  paperAttack: 3,
  technique: 'T1489',
  description:
    "The attacker (or a crash) kills the first security service process with SIGKILL while the victim keeps logging in through the gateway, one login after another, for 1 s (the watchman's first restart waits 1 s). With one security service every login then fails until the watchman has it back; with replicas on a shared PostgreSQL store (`lab up --store postgres --security-replicas 2`) the gateway sends each login step to the next replica when one gives no answer, and a challenge issued by the dead one can be answered at another. Expected: succeeded with one security service (the labs `attack simulate` starts, every posture), blocked with 2 or more.",
  evidence:
    'The victim logs in once before the kill (else inconclusive), then counts its logins during the outage window: succeeded when more than half failed; blocked when none did; inconclusive in between, or when no login was tried in the window. Also the refusal codes, and the pid the watchman brought back.',
  // The labs the runner starts have one security service; expectedIn says it for any lab.
  expected: { none: 'succeeded', paper: 'succeeded', trusted: 'succeeded' },
  expectedIn: (lab) => (lab.parts.filter((p) => p.kind === 'security').length >= 2 ? 'blocked' : 'succeeded'),
  onlyOn: {
    runtimes: ['process'],
    why: 'it kills a process of the lab; security service replicas run on processes only for now (issue 17), and on Docker the engine restarts a killed container instead of the watchman',
  },

  async setup(ctx) {
    if (ctx.defences.login !== 'basic') return;
    await addFreshUsers(ctx, 'tms-down-user', FRESH_USERS);
  },

  async detonate(ctx) {
    const { lab, victim } = ctx;
    const target = `${lab.gatewayUrl}/auth/*`;
    const fresh = freshUsers(ctx);
    let next = 0;
    const logIn = async (): Promise<unknown> => {
      if (fresh.length === 0) return login(lab, victim.name, victim.password, victim.privateKey);
      const u = fresh[next++];
      if (u === undefined) throw new TrustedMsError('SCENARIO_INCONCLUSIVE', 'no fresh user left');
      return login(lab, u.name, u.password, undefined);
    };
    try {
      await logIn();
      ctx.evidence.attempts.push({
        action: 'the victim logs in before the kill',
        target,
        status: 200,
        gotData: false,
      });
    } catch (err) {
      ctx.evidence.inconclusive = `the victim could not log in before the kill (${codeOf(err)})`;
      return;
    }
    const victimPart = await firstSecurityPart(ctx);
    const outage: Outage = {
      killed: { name: victimPart.name, pid: victimPart.pid as number },
      ok: 0,
      failed: 0,
      codes: {},
    };
    ctx.scratch.outage = outage;
    process.kill(outage.killed.pid, 'SIGKILL');
    const until = performance.now() + OUTAGE_WINDOW_MS;
    while (performance.now() < until && (fresh.length === 0 || next < fresh.length)) {
      try {
        await logIn();
        outage.ok += 1;
      } catch (err) {
        outage.failed += 1;
        const code = codeOf(err);
        outage.codes[code] = (outage.codes[code] ?? 0) + 1;
      }
      await sleep(PAUSE_MS);
    }
    ctx.evidence.attempts.push({
      action: `the victim logs in during the ${OUTAGE_WINDOW_MS} ms after ${outage.killed.name} (pid ${outage.killed.pid}) was killed`,
      target,
      gotData: false,
      note: `${outage.ok} logged in, ${outage.failed} failed${
        outage.failed
          ? ` (${Object.entries(outage.codes)
              .map(([c, n]) => `${c} x${n}`)
              .join(', ')})`
          : ''
      }`,
    });
    ctx.evidence.measurements = {
      ...ctx.evidence.measurements,
      securityReplicas: lab.parts.filter((p) => p.kind === 'security').length,
      loginsDuringOutage: outage.ok + outage.failed,
      failedDuringOutage: outage.failed,
    };
  },

  judge(ctx): Verdict {
    if (ctx.evidence.inconclusive !== undefined) return 'inconclusive';
    const tried = ctx.evidence.measurements?.loginsDuringOutage ?? 0;
    const failed = ctx.evidence.measurements?.failedDuringOutage ?? 0;
    if (tried === 0) {
      ctx.evidence.inconclusive = 'no login was tried during the outage';
      return 'inconclusive';
    }
    if (failed > tried / 2) return 'succeeded';
    if (failed === 0) return 'blocked';
    ctx.evidence.inconclusive = `${failed} of ${tried} logins failed: neither none nor most`;
    return 'inconclusive';
  },

  async revert(ctx) {
    await securityBack(ctx);
    await removeFreshUsers(ctx);
  },
};

/** The watchman brings the killed one back as a new process; the lab is restored once that one answers. */
async function securityBack(ctx: ScenarioContext): Promise<void> {
  const outage = ctx.scratch.outage as Outage | undefined;
  if (outage === undefined) return;
  const home = await labHome(ctx.lab);
  const deadline = performance.now() + BACK_WITHIN_MS;
  while (performance.now() < deadline) {
    const part = (await readLabState(home).catch(() => undefined))?.parts.find(
      (p) => p.name === outage.killed.name,
    );
    if (part?.pid !== undefined && part.pid !== outage.killed.pid && (await answers(part, ctx.lab.labId))) {
      ctx.evidence.attempts.push({
        action: `the watchman brought ${part.name} back`,
        target: part.url,
        gotData: false,
        note: `pid ${part.pid}`,
      });
      ctx.scratch.outage = undefined;
      return;
    }
    await sleep(250);
  }
  throw new TrustedMsError('LAB_NOT_RESTORED', `${outage.killed.name} did not come back after it was killed`);
}

/** The first security service of the lab as it is now (a restart since `lab up` has a new pid). */
async function firstSecurityPart(ctx: ScenarioContext): Promise<PartState> {
  const now = await readLabState(await labHome(ctx.lab));
  const part = (now ?? ctx.lab).parts.find((p) => p.kind === 'security');
  if (part?.pid === undefined)
    throw new TrustedMsError('LAB_NOT_RUNNING', 'the lab has no security service process');
  return part;
}

async function answers(part: PartState, labId: string): Promise<boolean> {
  try {
    const r = await request(`${part.url}/healthz`, { headersTimeout: 1000, bodyTimeout: 1000 });
    const body = (await r.body.json()) as { labId?: unknown };
    return body.labId === labId;
  } catch {
    return false;
  }
}

function codeOf(err: unknown): string {
  return isTrustedMsError(err) ? err.code : 'ERROR';
}
