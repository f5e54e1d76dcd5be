import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { errnoCode, TrustedMsError } from '../errors.js';
import { makeDir, writeFileDurably } from '../fs-sync.js';
import { inContainers, readLabState } from '../kernel/lab-state.js';
import { ownerAlive, processStart } from '../kernel/owner-process.js';
import { openLabStore } from '../store/open.js';
import { openUserAdmin } from '../users/admin.js';
import { removeVirtualUsers } from './users.js';

/**
 * What a `lab load` run makes in the lab, written to the lab home *before* it makes it: its users
 * (`load-<runId>-<i>`) and, with --client-containers, its client containers. A run killed half-way
 * (SIGKILL, a crash, a closed terminal) is cleaned up from this record by the next `lab load` or
 * `lab down`; a run interrupted (SIGINT, SIGTERM) cleans up from it at once. One file per run, so
 * that runs side by side in one home each keep their own.
 */
export interface LoadRunRecord {
  version: 1;
  pid: number;
  /** the pid's start time (Linux), so a recycled pid is not taken for the run */
  pidStart?: string;
  startedAt: string;
  labId: string;
  /** the users of the run are named `load-<runId>-<i>` */
  runId: string;
  /** its virtual users run in containers of the lab (Docker), removed by label */
  clientContainers: boolean;
}

const RUN_ID_RE = /^[0-9a-f]{6,32}$/;

function dirOf(home: string): string {
  return join(home, 'load-runs');
}
function fileOf(home: string, runId: string): string {
  return join(dirOf(home), `${runId}.json`);
}

/** The record of one run: written before its users are made, removed once it cleaned up. */
export class LoadRunJournal {
  readonly #home: string;
  readonly record: LoadRunRecord;

  private constructor(home: string, record: LoadRunRecord) {
    this.#home = home;
    this.record = record;
  }

  /** Cleans up what killed runs left in `home` (`say` tells what), then records this run. */
  static async begin(
    home: string,
    run: { labId: string; runId: string; clientContainers: boolean },
    say: (line: string) => void = () => undefined,
  ): Promise<LoadRunJournal> {
    if (!RUN_ID_RE.test(run.runId)) throw new TrustedMsError('INVALID_INPUT', 'a load run id is hex');
    for (const line of await recoverLoadRuns(home)) say(`cleaned up after a killed load run: ${line}`);
    const pidStart = await processStart(process.pid);
    const journal = new LoadRunJournal(home, {
      version: 1,
      pid: process.pid,
      ...(pidStart === undefined ? {} : { pidStart }),
      startedAt: new Date().toISOString(),
      ...run,
    });
    await makeDir(dirOf(home));
    await writeFileDurably(fileOf(home, run.runId), `${JSON.stringify(journal.record, null, 2)}\n`, 0o600);
    return journal;
  }

  /** The run cleaned up by its own hands: nothing left to recover. */
  async end(): Promise<void> {
    await rm(fileOf(this.#home, this.record.runId), { force: true });
  }
}

async function readRecords(home: string): Promise<{ file: string; record: LoadRunRecord }[]> {
  let names: string[];
  try {
    names = await readdir(dirOf(home));
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return [];
    throw new TrustedMsError('STORE_IO', `cannot read ${dirOf(home)} (${errnoCode(err) ?? 'error'})`);
  }
  const out: { file: string; record: LoadRunRecord }[] = [];
  for (const name of names.filter((n) => n.endsWith('.json')).sort()) {
    const file = join(dirOf(home), name);
    const text = await readFile(file, 'utf8').catch(() => undefined);
    if (text === undefined) continue;
    let record: LoadRunRecord;
    try {
      record = JSON.parse(text) as LoadRunRecord;
      if (record.version !== 1 || !RUN_ID_RE.test(record.runId) || typeof record.labId !== 'string')
        throw new Error('shape');
    } catch {
      throw new TrustedMsError('STORE_CORRUPT', `${file} is not a load run record`, {
        actions: [`look at it, then remove it: rm ${file}`],
      });
    }
    out.push({ file, record });
  }
  return out;
}

/**
 * Removes what runs that are no longer alive left in `home`: their client containers (by label,
 * while their lab runs; `lab down` removes them anyway) and their users. Also, though their process
 * is alive: the run `runId` (its own end), or every run of this process (`thisProcess`: its
 * SIGINT/SIGTERM handler). Returns one line per thing done.
 */
export async function recoverLoadRuns(
  home: string,
  opts: { runId?: string; thisProcess?: boolean } = {},
): Promise<string[]> {
  const done: string[] = [];
  for (const { file, record } of await readRecords(home)) {
    const own = record.runId === opts.runId || (opts.thisProcess === true && record.pid === process.pid);
    if (!own && (await ownerAlive(record.pid, record.pidStart))) continue;
    if (record.clientContainers) {
      const state = await readLabState(home);
      if (state?.labId === record.labId && inContainers(state.runtime)) {
        // Loaded on demand: it brings dockerode, which a process lab never needs.
        const { removeClientContainers } = await import('./client-containers.js');
        const n = await removeClientContainers(state);
        if (n > 0) done.push(`removed ${n} client container(s) of lab ${record.labId}`);
      }
    }
    const prefix = `load-${record.runId}-`;
    const users = Object.keys((await openLabStore(home).data()).users).filter(
      (u) => u.startsWith(prefix) && /^\d+$/.test(u.slice(prefix.length)),
    );
    if (users.length > 0) {
      const removed = await removeVirtualUsers(await openUserAdmin(home), users);
      done.push(`removed ${removed} load user(s) ${prefix}*`);
    }
    // A signal handler's cleanup races its own run, which may still be making a user or a container:
    // the record stays, and the next command (this process has exited by then) removes a straggler.
    if (!(opts.thisProcess === true && record.pid === process.pid)) await rm(file, { force: true });
  }
  return done;
}
