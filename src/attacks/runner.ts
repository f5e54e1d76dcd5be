import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadPrivateKeyFile, privateKeyPath } from '../crypto/keys.js';
import { isTrustedMsError } from '../errors.js';
import { labDown } from '../lab/down.js';
import type { Posture } from '../lab/posture.js';
import { chooseRuntime, type RuntimeChoice, runtimeFor } from '../lab/runtimes/select.js';
import { type LabState, readLabState } from '../lab/state.js';
import { labUp } from '../lab/up.js';
import { packageVersion } from '../paths.js';
import { openUserAdmin } from '../users/admin.js';
import { keygenForUser } from '../users/keygen.js';
import { attackerClient } from './http.js';
import type { Evidence, LabUser, Scenario, ScenarioContext, Verdict } from './types.js';

/** The two accounts every scenario uses: made before the scenarios run, removed after. */
export const ATTACK_USERS = [
  { key: 'victim', name: 'tms-victim', role: 'admin' },
  { key: 'attacker', name: 'tms-attacker', role: 'analyst' },
] as const;

export interface RunOptions {
  scenarios: readonly Scenario[];
  postures: readonly Posture[];
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

  for (const posture of opts.postures) {
    if (running && alive && running.posture === posture && opts.home) {
      progress(`${posture}: using the running lab ${running.labId} in ${opts.home}`);
      const keyDir = join(opts.home, 'attack-keys');
      const users = await ensureAttackUsers(opts.home, keyDir);
      try {
        postures.push({
          posture,
          labId: running.labId,
          lab: 'running',
          services: running.parts.filter((p) => p.kind === 'service').length,
        });
        await runAll(running, users, opts, results);
      } finally {
        await removeAttackUsers(opts.home, keyDir);
      }
      continue;
    }
    const dir = await mkdtemp(join(tmpdir(), `tms-attack-${posture}-`));
    const home = join(dir, 'home');
    const keyDir = join(dir, 'keys');
    const services = opts.services ?? 20;
    try {
      const users = await ensureAttackUsers(home, keyDir);
      progress(`${posture}: bringing a lab up (${services} services)`);
      const t0 = Date.now();
      const { runtime: chosen, reason } = await chooseRuntime(opts.runtime ?? 'process');
      progress(`${posture}: runtime ${chosen.kind} (${reason})`);
      const up = await labUp({
        home,
        posture,
        services,
        runtime: chosen,
        onProgress: (s) => progress(`${posture}: ${s}`),
      });
      postures.push({ posture, labId: up.state.labId, lab: 'started', services, labUpMs: Date.now() - t0 });
      await runAll(up.state, users, opts, results);
    } catch (err) {
      // A lab that would not come up: every scenario of the posture fails, with the reason.
      const error = errorOf(err);
      postures.push({ posture, labId: '', lab: 'started', services, error });
      for (const s of opts.scenarios) {
        if (results.some((r) => r.id === s.id && r.posture === posture)) continue;
        const r = resultOf(s, posture, 'error', { attempts: [] }, 0, true, undefined, error);
        results.push(r);
        opts.onResult?.(r);
      }
    } finally {
      progress(`${posture}: taking the lab down`);
      await labDown(home).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  }
  const passed = results.filter((r) => r.passed).length;
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
  };
}

async function runAll(
  lab: LabState,
  users: { victim: LabUser; attacker: LabUser },
  opts: RunOptions,
  results: ScenarioResult[],
): Promise<void> {
  for (const scenario of opts.scenarios) {
    opts.onProgress?.(`${lab.posture}: ${scenario.id} …`);
    let r = await runScenario(scenario, lab, users, opts.timeoutMs ?? 10_000);
    // Measurements that could not carry a verdict (a busy machine starved the attacker, say) get
    // one more run, on a lab its revert restored; the report keeps why the first gave none, and a
    // second inconclusive stands.
    if (r.outcome === 'inconclusive' && r.reverted) {
      const reason = r.evidence.inconclusive ?? 'no reason given';
      opts.onProgress?.(`${lab.posture}: ${scenario.id} inconclusive (${reason}), running it once more`);
      const again = await runScenario(scenario, lab, users, opts.timeoutMs ?? 10_000);
      r = { ...again, rerunAfter: reason, durationMs: r.durationMs + again.durationMs };
    }
    results.push(r);
    opts.onResult?.(r);
  }
}

/** One scenario, one lab: setup → detonate → judge, and revert whatever happened. */
export async function runScenario(
  scenario: Scenario,
  lab: LabState,
  users: { victim: LabUser; attacker: LabUser },
  timeoutMs: number,
): Promise<ScenarioResult> {
  const t0 = Date.now();
  const client = attackerClient();
  const ctx: ScenarioContext = {
    lab,
    posture: lab.posture,
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
    await scenario.setup?.(ctx);
    await scenario.detonate(ctx);
    outcome = scenario.judge(ctx);
  } catch (err) {
    error = errorOf(err);
  } finally {
    try {
      await scenario.revert?.(ctx);
    } catch (err) {
      reverted = false;
      revertError = errorOf(err).message;
    }
    await client.close().catch(() => undefined);
  }
  return resultOf(
    scenario,
    lab.posture,
    outcome,
    ctx.evidence,
    Date.now() - t0,
    reverted,
    revertError,
    error,
  );
}

function resultOf(
  s: Scenario,
  posture: Posture,
  outcome: Verdict | 'error',
  evidence: Evidence,
  durationMs: number,
  reverted: boolean,
  revertError: string | undefined,
  error: { code: string; message: string } | undefined,
): ScenarioResult {
  const expected = s.expected[posture];
  return {
    id: s.id,
    title: s.title,
    paperAttack: s.paperAttack,
    technique: s.technique,
    posture,
    expected,
    outcome,
    passed: outcome === expected && reverted,
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
