import { readFile } from 'node:fs/promises';
import { errnoCode } from '../errors.js';

/**
 * The process that owns a record in a lab home (an attack run, a load run), told apart from a
 * process that later got the same pid: a record whose owner is gone is left over by a kill.
 */

/** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot); undefined off Linux. */
export async function processStart(pid: number): Promise<string | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  // The command name (field 2) may hold spaces and parentheses: count from its closing one.
  return stat?.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
}

/** The process `pid` runs, and is the one that started at `start` (when known). */
export async function ownerAlive(pid: number, start: string | undefined): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if (errnoCode(err) !== 'EPERM') return false;
  }
  return start === undefined || (await processStart(pid)) === start;
}
