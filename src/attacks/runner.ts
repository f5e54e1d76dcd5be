import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Session } from '../client/session.js';
import { loadPrivateKeyFile, privateKeyPath } from '../crypto/keys.js';
import type { Posture } from '../defences/posture.js';
import { ABLATION_NAMES, type Ablation, labelOf } from '../defences/presets.js';
import { isTrustedMsError } from '../errors.js';
import { type EdgeView, trustLabEdge, withLabTime } from '../kernel/edge-client.js';
import { type LabState, readLabState } from '../kernel/lab-state.js';
import { labDown } from '../lab/down.js';
import { chooseRuntime, type RuntimeChoice, runtimeFor } from '../lab/runtimes/select.js';
import { labUp } from '../lab/up.js';
import { packageVersion } from '../paths.js';
import { openUserAdmin } from '../users/admin.js';
import { keygenForUser } from '../users/keygen.js';
import type { Dependence } from './ablation.js';
import { attackerClient } from './http.js';
import { AttackRunJournal } from './journal.js';
import {
  appliesTo,
  type Evidence,
  expectationIn,
  type LabUser,
  type Scenario,
  type ScenarioContext,
  type Verdict,
} from './types.js';
import { hasTarget, untilVictimServed } from './victim-served.js';

/** The two accounts every scenario uses: made before the scenarios run, removed after. */
export const ATTACK_USERS = [
  { key: 'victim', name: 'tms-victim', role: 'admin' },
  { key: 'attacker', name: 'tms-attacker', role: 'analyst' },
] as const;

/** One lab to run the scenarios against: a posture, less the defences named in `without`. */
export interface LabVariant {
  posture: Posture;
  without?: readonly Ablation[];
}

export interface RunOptions {
  scenarios: readonly Scenario[];
  postures: readonly Posture[];
  /**
   * The labs to run, in order; by default one per posture. `--ablate`: trusted, then trusted less
   * each defence in turn (ablationVariants), which shows which defence each scenario depends on.
   */
  variants?: readonly LabVariant[];
  /** a lab running here is used for its own posture; any other posture gets a lab of its own */
  home?: string;
  /** services in the labs the runner brings up (default 20) */
  services?: number;
  /** what the labs the runner brings up run on (default: local processes) */
  runtime?: RuntimeChoice;
  /** bound on each request of a scenario, ms (default 10,000) */
  timeoutMs?: number;
  onProgress?: (line: string) => void;
  /** told each result as soon as it is known */
  onResult?: (result: ScenarioResult) => void;
}

export interface ScenarioResult {
  id: string;
  title: string;
  paperAttack: number;
  technique: string;
  posture: Posture;
  /** the lab's column in a report: the posture, or `trusted -links:mtls` for one with a defence removed */
  variant: string;
  /** the defences removed from the posture in the lab this ran against */
  without?: Ablation[];
  /** a variant of the ablation study (`--ablate`): its verdict has no expectation, it is the finding */
  ablation?: true;
  /** the expectation of the posture (for an ablated lab, of the full posture, shown for comparison) */
  expected: Verdict;
  /** judged from evidence; `error` when the scenario could not run to the end (a failure too) */
  outcome: Verdict | 'error';
  passed: boolean;
  evidence: Evidence;
  error?: { code: string; message: string };
  /** set when a first run was inconclusive and this is the second: the first run's reason */
  rerunAfter?: string;
  /** false when revert threw (the error is in revertError) */
  reverted: boolean;
  revertError?: string;
  durationMs: number;
}

export interface PostureRun {
  posture: Posture;
  variant: string;
  without?: Ablation[];
  labId: string;
  /** `running`: the lab found in --home; `started`: brought up for this run and taken down after */
  lab: 'running' | 'started';
  services: number;
  labUpMs?: number;
  error?: { code: string; message: string };
}

export interface AttackReport {
  schema: 'trusted-ms/attack-report@1';
  startedAt: string;
  /** what ran the scenarios: trusted-ms's version, Node's, the OS and architecture */
  environment: { trustedMs: string; node: string; platform: string };
  durationMs: number;
  postures: PostureRun[];
  results: ScenarioResult[];
  summary: { total: number; passed: number; failed: number };
  /** true when every scenario's outcome matched its expectation in every posture */
  ok: boolean;
  /** `--ablate`: which defence each scenario depends on (src/attacks/ablation.ts) */
  dependences?: Dependence[];
  /**
   * Scenarios asked for that do not exist on a lab's runtime (Scenario.onlyOn), per lab: listed so
   * that nobody takes their absence from `results` for a pass
   */
  notApplicable?: { id: string; variant: string; why: string }[];
}

/**
 * Runs scenarios against labs, posture by posture: a lab already running in `home` in that posture
 * is used as it is; otherwise one is brought up in a temporary home and taken down afterwards.
 */
export async function runAttacks(opts: RunOptions): Promise<AttackReport> {
  const started = Date.now();
  const progress = opts.onProgress ?? (() => undefined);
  const results: ScenarioResult[] = [];
  const postures: PostureRun[] = [];
  const running = opts.home ? await readLabState(opts.home) : undefined;
  // The runtime the lab was started with (a Docker lab's parts are containers, not processes).
  const runtime = running ? await runtimeFor(running.runtime).catch(() => undefined) : undefined;
  const alive =
    running && runtime
      ? (await Promise.all(running.parts.map((p) => runtime.isAlive(p)))).every(Boolean)
      : false;

  // Persisted before anything changes, so a killed run is undone by the next one or `lab down`.
  const journal = opts.home ? await AttackRunJournal.begin(opts.home, progress) : undefined;
  const variants: readonly LabVariant[] = opts.variants ?? opts.postures.map((posture) => ({ posture }));
  for (const v of variants) {
    const { posture } = v;
    const without = [...(v.without ?? [])];
    const label = labelOf(posture, without);
    // A variant of the ablation study needs its exact lab; a posture asked for plainly takes the
    // lab running in that posture as it is, with any defence removed from it (the report says
    // which, and judges it against the posture's expectations: a broken defence shows as failures).
    const study = v.without !== undefined;
    const runningWithout = running?.without ?? [];
    const same =
      running?.posture === posture &&
      (!study ||
        (runningWithout.length === without.length && without.every((a) => runningWithout.includes(a))));
    if (running && alive && same && opts.home) {
      // Named as it runs: with any defence removed from it.
      const runningLabel = labelOf(posture, runningWithout);
      progress(`${runningLabel}: using the running lab ${running.labId} in ${opts.home}`);
      const keyDir = join(opts.home, 'attack-keys');
      await journal?.inPlace(running, keyDir);
      const users = await ensureAttackUsers(opts.home, keyDir);
      try {
        postures.push({
          posture,
          variant: runningLabel,
          ...(runningWithout.length ? { without: [...runningWithout] } : {}),
          labId: running.labId,
          lab: 'running',
          services: running.parts.filter((p) => p.kind === 'service').length,
        });
        await runScenarios(withLabTime(running, opts.home), users, opts, results, study, journal);
      } finally {
        await removeAttackUsers(opts.home, keyDir);
      }
      continue;
    }
    const dir = await mkdtemp(join(tmpdir(), `tms-attack-${posture}-`));
    const home = join(dir, 'home');
    const keyDir = join(dir, 'keys');
    const services = opts.services ?? 20;
    const base = { posture, variant: label, ...(without.length ? { without } : {}) };
    await journal?.tempLab(home, dir);
    try {
      const users = await ensureAttackUsers(home, keyDir);
      progress(`${label}: bringing a lab up (${services} services)`);
      const t0 = Date.now();
      const { runtime: chosen, reason } = await chooseRuntime(opts.runtime ?? 'process');
      progress(`${label}: runtime ${chosen.kind} (${reason})`);
      const up = await labUp({
        home,
        posture,
        without,
        services,
        runtime: chosen,
        // audit:signed: the temporary lab's audit key goes with its temporary key folder
        auditKeyDir: keyDir,
        onProgress: (s) => progress(`${label}: ${s}`),
      });
      postures.push({ ...base, labId: up.state.labId, lab: 'started', services, labUpMs: Date.now() - t0 });
      await runScenarios(withLabTime(up.state, home), users, opts, results, study);
    } catch (err) {
      // A lab that would not come up: every scenario of the lab fails, with the reason.
      const error = errorOf(err);
      postures.push({ ...base, labId: '', lab: 'started', services, error });
      // the lab the runner starts: one security service
      const lab = { posture, parts: [], ...(without.length ? { without } : {}) };
      for (const s of opts.scenarios) {
        if (results.some((r) => r.id === s.id && r.variant === label)) continue;
        const r = resultOf(s, lab, study, 'error', { attempts: [] }, 0, true, undefined, error);
        results.push(r);
        opts.onResult?.(r);
      }
    } finally {
      progress(`${label}: taking the lab down`);
      await labDown(home).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
      await journal?.tempLabGone(dir);
    }
  }
  await journal?.end();
  const passed = results.filter((r) => r.passed).length;
  const notApplicable = postures
    .filter((p) => p.error === undefined)
    .flatMap((p) =>
      opts.scenarios
        .filter(
          (sc) => sc.onlyOn !== undefined && !results.some((r) => r.id === sc.id && r.variant === p.variant),
        )
        .map((sc) => ({ id: sc.id, variant: p.variant, why: sc.onlyOn?.why ?? '' })),
    );
  return {
    schema: 'trusted-ms/attack-report@1',
    startedAt: new Date(started).toISOString(),
    environment: {
      trustedMs: packageVersion(),
      node: process.version,
      platform: `${process.platform} ${process.arch}`,
    },
    durationMs: Date.now() - started,
    postures,
    results,
    summary: { total: results.length, passed, failed: results.length - passed },
    ok: results.length > 0 && passed === results.length,
    ...(notApplicable.length > 0 ? { notApplicable } : {}),
  };
}

/** The scenarios in turn against one lab, each result pushed to `results` as soon as it is known. */
export async function runScenarios(
  /** with the running lab's time, so that its clients judge the gateway's certificate on it too */
  lab: LabState & EdgeView,
  users: { victim: LabUser; attacker: LabUser },
  opts: RunOptions,
  results: ScenarioResult[],
  /** a variant of the ablation study: its verdicts have no expectation */
  study = false,
  journal?: AttackRunJournal,
): Promise<void> {
  // Once a revert fails the lab is no longer the one the expectations were declared for: later
  // scenarios are reported as not run, with the reason, rather than judged on a changed lab.
  let notRestored: { code: string; message: string } | undefined;
  for (const scenario of opts.scenarios) {
    if (notRestored) {
      const r = resultOf(scenario, lab, study, 'error', { attempts: [] }, 0, true, undefined, notRestored);
      results.push(r);
      opts.onResult?.(r);
      continue;
    }
    if (!appliesTo(scenario, lab)) {
      opts.onProgress?.(
        `${labelOf(lab.posture, lab.without)}: ${scenario.id} not run: not applicable on ${lab.runtime} (${scenario.onlyOn?.why})`,
      );
      continue;
    }
    opts.onProgress?.(`${labelOf(lab.posture, lab.without)}: ${scenario.id} …`);
    await journal?.detonating(lab, scenario.id);
    let r = await runScenario(scenario, lab, users, opts.timeoutMs ?? 10_000, study);
    if (r.reverted) await journal?.reverted();
    // Measurements that could not carry a verdict (a busy machine starved the attacker, say) get
    // one more run, on a lab its revert restored; the report keeps why the first gave none, and a
    // second inconclusive stands.
    if (r.outcome === 'inconclusive' && r.reverted) {
      const reason = r.evidence.inconclusive ?? 'no reason given';
      opts.onProgress?.(
        `${labelOf(lab.posture, lab.without)}: ${scenario.id} inconclusive (${reason}), running it once more`,
      );
      await journal?.detonating(lab, scenario.id);
      const again = await runScenario(scenario, lab, users, opts.timeoutMs ?? 10_000, study);
      if (again.reverted) await journal?.reverted();
      r = { ...again, rerunAfter: reason, durationMs: r.durationMs + again.durationMs };
    }
    results.push(r);
    opts.onResult?.(r);
    if (!r.reverted) {
      notRestored = {
        code: 'LAB_NOT_RESTORED',
        message: `not run: the revert of ${scenario.id} failed (${r.revertError ?? 'unknown error'}), so the lab is no longer as declared`,
      };
      opts.onProgress?.(`${labelOf(lab.posture, lab.without)}: ${notRestored.message}`);
    }
  }
}

/** The victim's session the last check after a revert was served with, per lab: one request next time. */
const servingSessions = new WeakMap<object, Session>();

/**
 * One scenario, one lab: setup → detonate → judge, and revert whatever happened; then the victim
 * must be served through the gateway again (untilVictimServed), or the revert counts as failed.
 */
export async function runScenario(
  scenario: Scenario,
  lab: LabState & EdgeView,
  users: { victim: LabUser; attacker: LabUser },
  timeoutMs: number,
  study = false,
): Promise<ScenarioResult> {
  const t0 = Date.now();
  const client = attackerClient(undefined, lab);
  const ctx: ScenarioContext = {
    lab,
    posture: lab.posture,
    defences: lab.defences,
    ...users,
    client,
    timeoutMs,
    evidence: { attempts: [] },
    scratch: {},
  };
  let outcome: Verdict | 'error' = 'error';
  let error: { code: string; message: string } | undefined;
  let reverted = true;
  let revertError: string | undefined;
  try {
    // The victim's and the runner's own requests to the gateway (login, callService) trust the lab CA.
    await trustLabEdge(lab);
    await scenario.setup?.(ctx);
    await scenario.detonate(ctx);
    outcome = scenario.judge(ctx);
  } catch (err) {
    error = errorOf(err);
  } finally {
    try {
      await scenario.revert?.(ctx);
      // Reverted means the lab serves its users again, not only that revert() returned.
      if (hasTarget(lab)) {
        const served = await untilVictimServed(lab, users.victim, { session: servingSessions.get(lab) });
        servingSessions.set(lab, served.session);
      }
    } catch (err) {
      reverted = false;
      revertError = errorOf(err).message;
    }
    await client.close().catch(() => undefined);
  }
  return resultOf(scenario, lab, study, outcome, ctx.evidence, Date.now() - t0, reverted, revertError, error);
}

function resultOf(
  s: Scenario,
  lab: Pick<LabState, 'posture' | 'without' | 'parts'>,
  study: boolean,
  outcome: Verdict | 'error',
  evidence: Evidence,
  durationMs: number,
  reverted: boolean,
  revertError: string | undefined,
  error: { code: string; message: string } | undefined,
): ScenarioResult {
  const { posture } = lab;
  const without = [...(lab.without ?? [])];
  const expected = expectationIn(s, lab);
  // In the ablation study a lab with a defence removed has no expectation: the verdict is the
  // finding (which defence the scenario depends on). It still must be a verdict, and the lab must
  // be restored.
  const ablated = study && without.length > 0;
  return {
    id: s.id,
    title: s.title,
    paperAttack: s.paperAttack,
    technique: s.technique,
    posture,
    variant: labelOf(posture, without),
    ...(without.length ? { without } : {}),
    ...(ablated ? { ablation: true } : {}),
    expected,
    outcome,
    passed: (ablated ? outcome === 'blocked' || outcome === 'succeeded' : outcome === expected) && reverted,
    evidence,
    ...(error ? { error } : {}),
    reverted,
    ...(revertError === undefined ? {} : { revertError }),
    durationMs,
  };
}

function errorOf(err: unknown): { code: string; message: string } {
  if (isTrustedMsError(err)) return { code: err.code, message: err.message.split('\n')[0] ?? '' };
  return { code: 'INTERNAL', message: String((err as Error)?.message ?? err).split('\n')[0] ?? '' };
}

/** (Re)creates the victim and the attacker with fresh passwords and RSA keys (the paper needs RSA). */
export async function ensureAttackUsers(
  home: string,
  keyDir: string,
): Promise<{ victim: LabUser; attacker: LabUser }> {
  const admin = await openUserAdmin(home);
  const out: Partial<Record<'victim' | 'attacker', LabUser>> = {};
  for (const u of ATTACK_USERS) {
    await admin.removeUser(u.name).catch((err: unknown) => {
      if (!isTrustedMsError(err, 'USER_NOT_FOUND')) throw err;
    });
    const password = randomBytes(12).toString('base64url');
    await admin.addUser({ name: u.name, role: u.role, password });
    await keygenForUser(admin, { user: u.name, type: 'rsa', keyDir, force: true });
    const privateKey = await loadPrivateKeyFile(privateKeyPath(keyDir, u.name));
    out[u.key] = { name: u.name, role: u.role, password, privateKey };
  }
  return out as { victim: LabUser; attacker: LabUser };
}

/** Removes the attack users and their keys from a lab the runner did not start. */
export async function removeAttackUsers(home: string, keyDir: string): Promise<void> {
  const admin = await openUserAdmin(home);
  for (const u of ATTACK_USERS) await admin.removeUser(u.name).catch(() => undefined);
  await rm(keyDir, { recursive: true, force: true });
}

/** The ablation study: trusted as it is, then trusted less each removable defence in turn. */
export function ablationVariants(): LabVariant[] {
  return [
    { posture: 'trusted' },
    ...ABLATION_NAMES.map((a) => ({ posture: 'trusted' as const, without: [a] })),
  ];
}
