import { closeSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { errnoCode } from '../errors.js';
import { LabClock } from '../protocol/lab-clock.js';

/** Where the lab clock's high-water mark is kept, in the lab home next to the store. */
export const LAB_CLOCK_FILE = 'lab-clock.json';

/**
 * How far ahead of the latest reading the mark is written. A reading past the mark writes a new one
 * first, so the mark on disk is always ahead of every time handed out (a ticket's `iat`, a
 * revocation's `notBefore`, an audit entry's time), without a write per reading: at most one small
 * write per 2 s while the clock is read, none while it is not. The cost: a security service
 * restarted within 2 s of its last reading starts up to 2 s ahead of the wall clock.
 */
export const MARK_AHEAD_MS = 2000;

export interface HomeLabClockOptions {
  wall?: () => number;
  monotonic?: () => number;
  log?: (line: string) => void;
}

/**
 * The lab clock (`LabClock`) as read by the writer of the home's store: the security service while
 * the lab runs, the CLI while it is down. At start the wall clock, or the high-water mark the last
 * writer left in `<home>/lab-clock.json` when that is later (a restart after the wall clock stepped
 * back), then carried forward on the monotonic clock. So a restart across a step back never hands
 * out a time behind one it stored: a revocation's `notBefore` stays after the tickets it must refuse
 * (before, `user key remove` after such a restart let the old tickets work).
 *
 * A mark that cannot be written (disk full) is said in the log and the reading handed out anyway:
 * the writes that would store it fail the same way (tickets are not issued without their audit
 * record).
 */
export function homeLabClock(home: string, opts: HomeLabClockOptions = {}): () => number {
  const file = join(home, LAB_CLOCK_FILE);
  const log = opts.log ?? ((line: string) => console.error(line));
  let mark = readMark(file, log);
  const clock = new LabClock(opts.monotonic);
  clock.adopt(Math.max((opts.wall ?? Date.now)(), mark));
  return () => {
    const t = clock.now();
    if (t > mark) {
      // Never lower a mark another writer left (the CLI, on its own clock, while this one was
      // stopped): the next start must still begin after every time that writer stored.
      mark = Math.max(Math.floor(t) + MARK_AHEAD_MS, readMark(file, log));
      writeMark(file, mark, log);
    }
    return t;
  };
}

/**
 * `homeLabClock` for the CLI's store while the lab is down, made at its first reading (a command
 * that only reads the store neither reads nor writes the mark), as the store's `now`.
 */
export function homeLabClockAtFirstUse(home: string, opts: HomeLabClockOptions = {}): () => Date {
  let clock: (() => number) | undefined;
  return () => {
    clock ??= homeLabClock(home, opts);
    return new Date(clock());
  };
}

function readMark(file: string, log: (line: string) => void): number {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return 0; // a new lab
  }
  try {
    const mark = (JSON.parse(text) as { highWaterMs?: unknown }).highWaterMs;
    if (typeof mark === 'number' && Number.isSafeInteger(mark) && mark > 0) return mark;
  } catch {
    // said below
  }
  log(`lab clock: ${file} is not a high-water mark; starting from the wall clock`);
  return 0;
}

/** Synchronous: the reading that asked for it is handed out only once its mark is on disk. */
function writeMark(file: string, mark: number, log: (line: string) => void): void {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, `${JSON.stringify({ highWaterMs: mark })}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
    syncFolder(dirname(file));
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      // not made
    }
    // No home yet: nothing was stored, so there is nothing for the mark to be ahead of.
    if (errnoCode(err) === 'ENOENT') return;
    log(`lab clock: cannot write its high-water mark ${file}: ${(err as Error).message}`);
  }
}

function syncFolder(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Not every platform can fsync a folder (as syncDir in fs-sync.ts).
  }
}
