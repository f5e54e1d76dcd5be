import { chmod, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, sep } from 'node:path';
import { labDown } from '../../src/lab/down.js';

/*
 * A vitest global setup, for every run of the suite (tiers or lane). A test that times out never reaches
 * its `finally`, and a lab's parts are detached processes: they would serve on after the run, beside
 * the next tier's labs on the same 2 cores. The run gets a temporary folder of its own (TMPDIR, so
 * every home a test or the attack runner makes is in it, and the CLI processes the tests start
 * inherit it); at the end, the labs still running from a home in it are taken down and named, and
 * the folder goes. Labs of another run on the machine (a helper's, a CI clone's) are never touched.
 */

let runDir = '';

export async function setup(): Promise<void> {
  runDir = await mkdtemp(join(tmpdir(), 'tms-vitest-'));
  // The PostgreSQL tests run initdb and the server as the `postgres` user, in folders made here.
  await chmod(runDir, 0o755);
  process.env.TMPDIR = runDir;
}

export async function teardown(): Promise<void> {
  for (const home of await runningHomes(runDir)) {
    const done = await labDown(home).then(
      () => 'taken down',
      (err: unknown) => `could not be taken down: ${(err as Error).message}`,
    );
    console.warn(`a lab left running by a test (timed out?) in ${home}: ${done}`);
  }
  await rm(runDir, { recursive: true, force: true });
}

/** The lab homes under `dir` that running parts were started from (their TMS_PART_CONFIG). */
async function runningHomes(dir: string): Promise<string[]> {
  const homes = new Set<string>();
  const marker = `${sep}lab${sep}`;
  for (const pid of (await readdir('/proc').catch(() => [])).filter((p) => /^\d+$/.test(p))) {
    const environ = await readFile(`/proc/${pid}/environ`, 'utf8').catch(() => '');
    const config = environ
      .split('\0')
      .find((v) => v.startsWith('TMS_PART_CONFIG='))
      ?.slice('TMS_PART_CONFIG='.length);
    const at = config?.indexOf(marker) ?? -1;
    if (config?.startsWith(`${dir}${sep}`) && at > 0) homes.add(config.slice(0, at));
  }
  return [...homes];
}
