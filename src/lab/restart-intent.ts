import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { labDir } from '../kernel/lab-state.js';

/**
 * A restart of a service under way by another process (the CLI's `restartService`: a scenario, its
 * revert, an operator's reconfiguration), which the watchman must not race. Between the stop and
 * the new process listening, the service is dead and its port free, often for more than the
 * watchman's first backoff (1 s) while the new launch is measured and reported: the watchman then
 * started the service again itself, from the lab state as it was (the busy matrix: a swapped
 * program run by the watchman's start and served, the CLI's own start losing the port, a revert
 * "not attested again"). The record names the restarting process; one whose process is gone counts
 * for nothing.
 */
function intentFile(home: string, service: string): string {
  return join(labDir(home), 'restarting', `${service}.json`);
}

export async function markRestarting(home: string, service: string): Promise<() => Promise<void>> {
  const file = intentFile(home, service);
  await mkdir(join(labDir(home), 'restarting'), { recursive: true, mode: 0o700 });
  await writeFile(file, `${JSON.stringify({ pid: process.pid, at: new Date().toISOString() })}\n`, {
    mode: 0o600,
  });
  return () => rm(file, { force: true });
}

/** Whether a live process other than this one is restarting `service` now. */
export async function restartingElsewhere(home: string, service: string): Promise<boolean> {
  let pid: unknown;
  try {
    pid = (JSON.parse(await readFile(intentFile(home, service), 'utf8')) as { pid?: unknown }).pid;
  } catch {
    return false;
  }
  if (typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
