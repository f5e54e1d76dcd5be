import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LoadRunJournal, recoverLoadRuns } from '../../../src/load/journal.js';
import { createVirtualUsers } from '../../../src/load/users.js';
import { openLabStore } from '../../../src/store/open.js';
import { openUserAdmin } from '../../../src/users/admin.js';

/**
 * `lab load` killed: its record, written before its users are made, is what the next `lab load` or
 * `lab down` cleans up from. A pid that is not running stands for the killed run.
 */

const DEAD_PID = 2 ** 22 + 12_345;
let dir: string;
let home: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tms-load-journal-'));
  home = join(dir, 'home');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const loadUsers = async () =>
  Object.keys((await openLabStore(home).data()).users).filter((u) => u.startsWith('load-'));

/** A run whose process was killed after it made its users: its record names a pid no longer alive. */
async function killedRun(runId: string, count: number): Promise<void> {
  const journal = await LoadRunJournal.begin(home, { labId: 'ab12cd34', runId, clientContainers: false });
  await createVirtualUsers(await openUserAdmin(home), {
    runId,
    count,
    roles: ['analyst'],
    login: 'challenge',
  });
  const file = join(home, 'load-runs', `${runId}.json`);
  const record = JSON.parse(await readFile(file, 'utf8'));
  await writeFile(file, JSON.stringify({ ...record, pid: DEAD_PID, pidStart: undefined }));
  expect(journal.record.runId).toBe(runId);
}

describe('the record of a lab load run', () => {
  it('a killed run: the next cleanup removes its users, and only its, and its record', async () => {
    await openUserAdmin(home).then((a) =>
      a.addUser({ name: 'load-keep', role: 'analyst', password: 'pw-keep-1' }),
    );
    await killedRun('a1b2c3d4', 3);
    expect(await loadUsers()).toHaveLength(4);
    const lines = await recoverLoadRuns(home);
    expect(lines).toEqual(['removed 3 load user(s) load-a1b2c3d4-*']);
    expect(await loadUsers()).toEqual(['load-keep']);
    expect(await readdir(join(home, 'load-runs'))).toEqual([]);
  });

  it('a run still alive is left alone, unless it is this process cleaning up after itself', async () => {
    await LoadRunJournal.begin(home, { labId: 'ab12cd34', runId: 'beefcafe', clientContainers: false });
    await createVirtualUsers(await openUserAdmin(home), {
      runId: 'beefcafe',
      count: 2,
      roles: ['analyst'],
      login: 'challenge',
    });
    expect(await recoverLoadRuns(home)).toEqual([]);
    expect(await loadUsers()).toHaveLength(2);
    // Its signal handler: the users go at once; the record stays for a straggler made meanwhile.
    expect(await recoverLoadRuns(home, { thisProcess: true })).toEqual([
      'removed 2 load user(s) load-beefcafe-*',
    ]);
    expect(await loadUsers()).toEqual([]);
    expect(await readdir(join(home, 'load-runs'))).toEqual(['beefcafe.json']);
    // Its own end: the record goes too.
    expect(await recoverLoadRuns(home, { runId: 'beefcafe' })).toEqual([]);
    expect(await readdir(join(home, 'load-runs'))).toEqual([]);
  });

  it('a new run first cleans up after a killed one', async () => {
    await killedRun('0badf00d', 2);
    const said: string[] = [];
    await LoadRunJournal.begin(home, { labId: 'ab12cd34', runId: 'c0ffee00', clientContainers: false }, (l) =>
      said.push(l),
    );
    expect(said).toEqual(['cleaned up after a killed load run: removed 2 load user(s) load-0badf00d-*']);
    expect(await loadUsers()).toEqual([]);
  });
});
