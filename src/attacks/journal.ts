import { createHash } from 'node:crypto';
import { copyFile, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errnoCode, isTrustedMsError, TrustedMsError } from '../errors.js';
import { makeDir, writeFileDurably } from '../fs-sync.js';
import { type LabState, readLabState } from '../kernel/lab-state.js';
import { ownerAlive, processStart } from '../kernel/owner-process.js';
import type { ServicePartConfig } from '../kernel/part-config.js';
import { labDown } from '../lab/down.js';
import { restartService } from '../lab/restart.js';
import { openLabStore } from '../store/open.js';
import { openUserAdmin } from '../users/admin.js';

/**
 * What an `attack simulate` run has changed, written to the lab home *before* it changes it
 * (Stratus Red Team's persisted state), so that a run killed half-way (SIGKILL, a crash, a closed
 * terminal) is undone by the next `attack simulate` or `lab down` from this record alone: labs it
 * brought up in temporary homes, the attack users, and, before each scenario on a lab it did not
 * start, every service's code and config as they were. Nothing here depends on the scenario's own
 * memory (its `scratch`), which a killed process takes with it.
 */

/** Users a scenario may create: the two attack users, and the DoS scenarios' fresh users. */
const ATTACK_USER = /^tms-(victim|attacker|dos-user-\d+)$/;

interface ServiceSnapshot {
  name: string;
  appDir: string;
  /** sha256 of `service.mjs`; the bytes are kept once per hash under `originals/` */
  entryHash: string;
  /** the program the lab ran for it (a compromised process runs another one) */
  entry?: string;
  configFile: string;
  config: string;
  /** `attacker.json` is the implant's; it is removed unless it was there before */
  hadAttackerJson: boolean;
  /** the operator's pass-through it ran with (a scenario may start it with a variable of its own) */
  env?: Record<string, string>;
}

export interface AttackRunRecord {
  version: 1;
  pid: number;
  /** the pid's start time (Linux: /proc/<pid>/stat), so a recycled pid is not taken for the run */
  pidStart?: string;
  startedAt: string;
  /** labs brought up for the run in temporary homes: taken down and removed on recovery */
  tempLabs: { home: string; dir: string }[];
  /** the lab running in this home, attacked in place */
  inPlace?: {
    labId: string;
    keyDir: string;
    /** the scenario detonating now and the services as they were before it */
    scenario?: string;
    services?: ServiceSnapshot[];
  };
}

export interface RecoveryResult {
  /** what was undone, one line each (empty when there was nothing to do) */
  reverted: string[];
  /** another run is alive in this home: nothing was touched */
  busy?: { pid: number };
}

function dirOf(home: string): string {
  return join(home, 'attack-run');
}
function fileOf(home: string): string {
  return join(dirOf(home), 'journal.json');
}

async function readRecord(home: string): Promise<AttackRunRecord | undefined> {
  let text: string;
  try {
    text = await readFile(fileOf(home), 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw new TrustedMsError('STORE_IO', `cannot read ${fileOf(home)} (${errnoCode(err) ?? 'error'})`);
  }
  try {
    const r = JSON.parse(text) as AttackRunRecord;
    if (r.version !== 1 || !Array.isArray(r.tempLabs)) throw new Error('shape');
    return r;
  } catch {
    throw new TrustedMsError('STORE_CORRUPT', `${fileOf(home)} is not an attack run record`, {
      actions: [`look at it, then remove it: rm -r ${dirOf(home)}`],
    });
  }
}

function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** The record of one run, written through at each step before the step acts. */
export class AttackRunJournal {
  readonly #home: string;
  readonly #record: AttackRunRecord;

  private constructor(home: string, record: AttackRunRecord) {
    this.#home = home;
    this.#record = record;
  }

  /**
   * Starts the record of a new run in `home`, after undoing what a killed run left (its record).
   * Refused while another live run holds the record.
   */
  static async begin(home: string, say: (line: string) => void = () => undefined): Promise<AttackRunJournal> {
    const left = await recoverAttackRun(home);
    if (left.busy) {
      throw new TrustedMsError(
        'LAB_ALREADY_RUNNING',
        `another \`attack simulate\` (pid ${left.busy.pid}) is running against ${home}`,
        { actions: ['wait for it to finish, or stop it (Ctrl-C reverts what it changed)'] },
      );
    }
    for (const line of left.reverted) say(`reverted what a killed run left: ${line}`);
    const journal = new AttackRunJournal(home, {
      version: 1,
      pid: process.pid,
      ...(await processStart(process.pid).then((s) => (s === undefined ? {} : { pidStart: s }))),
      startedAt: new Date().toISOString(),
      tempLabs: [],
    });
    await journal.#save();
    return journal;
  }

  async #save(): Promise<void> {
    await makeDir(dirOf(this.#home));
    await writeFileDurably(fileOf(this.#home), `${JSON.stringify(this.#record, null, 2)}\n`, 0o600);
  }

  /** Before `lab up` in a temporary home: the record names it, so a kill cannot orphan it. */
  async tempLab(home: string, dir: string): Promise<void> {
    this.#record.tempLabs.push({ home, dir });
    await this.#save();
  }

  async tempLabGone(dir: string): Promise<void> {
    this.#record.tempLabs = this.#record.tempLabs.filter((t) => t.dir !== dir);
    await this.#save();
  }

  /** Before the attack users are made on the lab running in this home. */
  async inPlace(lab: LabState, keyDir: string): Promise<void> {
    this.#record.inPlace = { labId: lab.labId, keyDir };
    await this.#save();
  }

  /** Before a scenario's setup on the lab in this home: every service as it is now. */
  async detonating(lab: LabState, scenario: string): Promise<void> {
    const inPlace = this.#record.inPlace;
    // A lab this run brought up is thrown away whole: only the lab of this home needs a snapshot.
    if (inPlace === undefined || inPlace.labId !== lab.labId) return;
    const originals = join(dirOf(this.#home), 'originals');
    await makeDir(originals);
    const services: ServiceSnapshot[] = [];
    for (const p of lab.parts) {
      if (p.kind !== 'service' || p.appDir === undefined) continue;
      const code = await readFile(join(p.appDir, 'service.mjs'));
      const entryHash = sha256(code);
      const kept = join(originals, `${entryHash}.mjs`);
      // A copy, not a link: planting a variant rewrites the file in place (same inode).
      await readFile(kept).then(
        () => undefined,
        () => writeFile(kept, code, { mode: 0o600 }),
      );
      const hadAttackerJson = await readFile(join(p.appDir, 'attacker.json')).then(
        () => true,
        () => false,
      );
      services.push({
        name: p.name,
        appDir: p.appDir,
        entryHash,
        ...(p.entry === undefined ? {} : { entry: p.entry }),
        ...(p.env === undefined ? {} : { env: p.env }),
        configFile: p.configFile,
        config: await readFile(p.configFile, 'utf8'),
        hadAttackerJson,
      });
    }
    this.#record.inPlace = { ...inPlace, scenario, services };
    await this.#save();
  }

  /** After a scenario's own revert ran to its end. */
  async reverted(): Promise<void> {
    const inPlace = this.#record.inPlace;
    if (inPlace === undefined) return;
    this.#record.inPlace = { labId: inPlace.labId, keyDir: inPlace.keyDir };
    await this.#save();
  }

  /** The run is over and cleaned up by its own hands: nothing left to recover. */
  async end(): Promise<void> {
    await rm(dirOf(this.#home), { recursive: true, force: true });
  }
}

/**
 * Undoes what a run that is no longer alive left in `home`, from its record: takes down the labs it
 * brought up, puts back each service's code and config (restarting those that changed, or that run
 * another program, while the lab runs), removes the attack users and their keys. `own`: the run is
 * this process (its SIGINT/SIGTERM handler). A live run elsewhere is left alone (`busy`).
 */
export async function recoverAttackRun(home: string, opts: { own?: boolean } = {}): Promise<RecoveryResult> {
  const record = await readRecord(home);
  if (record === undefined) return { reverted: [] };
  // `own`: this process's signal handler, undoing its own run; otherwise only a dead run's record.
  if (!(opts.own === true || record.pid === process.pid) && (await ownerAlive(record.pid, record.pidStart))) {
    return { reverted: [], busy: { pid: record.pid } };
  }
  const reverted: string[] = [];
  for (const t of record.tempLabs) {
    await labDown(t.home).catch(() => undefined);
    await rm(t.dir, { recursive: true, force: true });
    reverted.push(`took down the lab it started in ${t.dir}`);
  }
  const inPlace = record.inPlace;
  if (inPlace !== undefined) {
    const state = await readLabState(home);
    const running = state?.labId === inPlace.labId ? state : undefined;
    for (const s of inPlace.services ?? []) {
      const changed: string[] = [];
      const entryFile = join(s.appDir, 'service.mjs');
      const now = await readFile(entryFile).catch(() => undefined);
      if (now === undefined || sha256(now) !== s.entryHash) {
        await copyFile(join(dirOf(home), 'originals', `${s.entryHash}.mjs`), entryFile);
        changed.push('its code');
      }
      if (!s.hadAttackerJson) {
        const had = await rm(join(s.appDir, 'attacker.json')).then(
          () => true,
          () => false,
        );
        if (had) changed.push("the implant's attacker.json");
      }
      const configChanged = (await readFile(s.configFile, 'utf8').catch(() => undefined)) !== s.config;
      if (configChanged) {
        await writeFileDurably(s.configFile, s.config, 0o600);
        changed.push('its config');
      }
      const part = running?.parts.find((p) => p.kind === 'service' && p.name === s.name);
      const otherProgram = part !== undefined && part.entry !== s.entry;
      const otherEnv = part !== undefined && JSON.stringify(part.env ?? {}) !== JSON.stringify(s.env ?? {});
      if (otherEnv) changed.push('its environment');
      if (running && part && (changed.length > 0 || otherProgram)) {
        // A config put back is registered again (trusted): the scenario registered its own.
        await restartService(running, s.name, {
          env: s.env ?? {},
          ...(configChanged ? { config: JSON.parse(s.config) as ServicePartConfig } : {}),
        });
        changed.push('restarted');
      }
      if (changed.length > 0)
        reverted.push(`${s.name} (${inPlace.scenario ?? 'scenario'}): ${changed.join(', ')}`);
    }
    const users = Object.keys((await openLabStore(home).data()).users).filter((u) => ATTACK_USER.test(u));
    if (users.length > 0) {
      const admin = await openUserAdmin(home);
      for (const u of users) {
        await admin.removeUser(u).catch((err: unknown) => {
          if (!isTrustedMsError(err, 'USER_NOT_FOUND')) throw err;
        });
      }
      reverted.push(`removed the attack users ${users.join(', ')}`);
    }
    await rm(inPlace.keyDir, { recursive: true, force: true });
  }
  await rm(dirOf(home), { recursive: true, force: true });
  return { reverted };
}
