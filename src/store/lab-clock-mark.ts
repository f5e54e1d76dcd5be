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
  /**
   * The running lab this clock serves (the security service's): a restart within the same lab and
   * the same boot of the machine takes its time from the lab's start on the machine's monotonic
   * clock, not from the wall clock (see `RunAnchor`). Without it (the CLI with the lab down) the
   * start is the later of wall and mark.
   */
  run?: { labId: string };
  /** The machine's monotonic clock, shared by its processes (CLOCK_MONOTONIC), in ms. */
  machineMonotonic?: () => number;
  /** This boot of the machine; undefined when it cannot be told (the wall clock is used then). */
  bootId?: () => string | undefined;
}

/**
 * Where a running lab's time stands on the machine's monotonic clock: at `monotonicMs` of boot
 * `bootId` the lab time of lab `labId` was `labMs`. A security service restarted by the watchman
 * (a crash) reads its time from here, so a wall clock that is wrong at that moment (the red team's
 * A7: a restart during a 3 s step of +2 h set the lab's calendar 2 h ahead for good, every ticket of
 * the moment expired and every later gateway restart logged all sessions out) moves nothing. A new
 * `lab up` is a new lab id, and a reboot a new boot id: both start from the wall clock again.
 */
interface RunAnchor {
  labId: string;
  bootId: string;
  labMs: number;
  monotonicMs: number;
}

/** CLOCK_MONOTONIC (libuv's hrtime): one clock for every process of this boot, containers included. */
export function machineMonotonicMs(): number {
  return Number(process.hrtime.bigint() / 1000n) / 1000;
}

/** The kernel's id of this boot, or undefined where there is none to read. */
export function machineBootId(): string | undefined {
  try {
    const id = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    return id.length > 0 ? id : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The lab clock (`LabClock`) as read by the writer of the home's store: the security service while
 * the lab runs, the CLI while it is down. At start the wall clock, or the high-water mark the last
 * writer left in `<home>/lab-clock.json` when that is later (a restart after the wall clock stepped
 * back), then carried forward on the monotonic clock. A security service restarted within its
 * running lab (`opts.run`) starts from the lab's own time instead (`RunAnchor`), whatever the wall
 * clock says at that moment. So a restart across a step back never hands
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
  const saved = readMarkFile(file, log);
  let mark = saved.mark;
  const wall = (opts.wall ?? Date.now)();
  const clock = new LabClock(opts.monotonic);
  let anchor: RunAnchor | undefined;
  if (opts.run) {
    const machineMonotonic = opts.machineMonotonic ?? machineMonotonicMs;
    const bootId = (opts.bootId ?? machineBootId)();
    const previous = saved.anchor;
    if (previous && bootId !== undefined && previous.labId === opts.run.labId && previous.bootId === bootId) {
      anchor = previous;
      const labNow = previous.labMs + (machineMonotonic() - previous.monotonicMs);
      clock.adopt(Math.max(labNow, mark));
      if (Math.abs(wall - labNow) > RESTART_WALL_NOTICE_MS) {
        log(
          `lab clock: restarted in lab ${opts.run.labId}: keeping the lab's time, ${Math.round((wall - labNow) / 1000)} s from the wall clock's`,
        );
      }
    } else {
      clock.adopt(Math.max(wall, mark));
      if (bootId !== undefined) {
        anchor = { labId: opts.run.labId, bootId, labMs: clock.now(), monotonicMs: machineMonotonic() };
        mark = Math.max(mark, Math.floor(clock.now()) + MARK_AHEAD_MS);
        writeMark(file, mark, anchor, log);
      }
    }
  } else {
    clock.adopt(Math.max(wall, mark));
  }
  return () => {
    const t = clock.now();
    if (t > mark) {
      // Never lower a mark another writer left (the CLI, on its own clock, while this one was
      // stopped): the next start must still begin after every time that writer stored.
      const onDisk = readMarkFile(file, log);
      mark = Math.max(Math.floor(t) + MARK_AHEAD_MS, onDisk.mark);
      writeMark(file, mark, anchor ?? onDisk.anchor, log);
    }
    return t;
  };
}

/**
 * The running lab's time as its security service keeps it, read and never written (the security
 * service is the mark's writer): from the run anchor when it is this lab's and this boot's, else the
 * wall clock. For the watchman, whose renewals fall due on the clock the identities are dated on:
 * on its own wall clock, a step back held the renewals back by the step's length and the lab's
 * certificates ran out once the wall was right again.
 */
export function runningLabTime(
  home: string,
  labId: string,
  opts: Pick<HomeLabClockOptions, 'wall' | 'machineMonotonic' | 'bootId'> = {},
): () => number {
  const file = join(home, LAB_CLOCK_FILE);
  const wall = opts.wall ?? Date.now;
  const machineMonotonic = opts.machineMonotonic ?? machineMonotonicMs;
  const bootId = (opts.bootId ?? machineBootId)();
  return () => {
    const { anchor } = readMarkFile(file, () => {});
    if (anchor?.labId !== labId || bootId === undefined || anchor.bootId !== bootId) return wall();
    return anchor.labMs + (machineMonotonic() - anchor.monotonicMs);
  };
}

/** A restart whose wall clock is this far from the lab's time says so in its log. */
const RESTART_WALL_NOTICE_MS = 5000;

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

function readMarkFile(file: string, log: (line: string) => void): { mark: number; anchor?: RunAnchor } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return { mark: 0 }; // a new lab
  }
  try {
    const saved = JSON.parse(text) as { highWaterMs?: unknown; run?: unknown };
    const mark = saved.highWaterMs;
    if (typeof mark === 'number' && Number.isSafeInteger(mark) && mark > 0) {
      const anchor = runAnchorOf(saved.run);
      return anchor ? { mark, anchor } : { mark };
    }
  } catch {
    // said below
  }
  log(`lab clock: ${file} is not a high-water mark; starting from the wall clock`);
  return { mark: 0 };
}

function runAnchorOf(x: unknown): RunAnchor | undefined {
  if (typeof x !== 'object' || x === null) return undefined;
  const r = x as Record<string, unknown>;
  const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
  if (
    typeof r.labId !== 'string' ||
    typeof r.bootId !== 'string' ||
    !finite(r.labMs) ||
    !finite(r.monotonicMs)
  ) {
    return undefined;
  }
  return { labId: r.labId, bootId: r.bootId, labMs: r.labMs, monotonicMs: r.monotonicMs };
}

/** Synchronous: the reading that asked for it is handed out only once its mark is on disk. */
function writeMark(
  file: string,
  mark: number,
  anchor: RunAnchor | undefined,
  log: (line: string) => void,
): void {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(
        fd,
        `${JSON.stringify(anchor ? { highWaterMs: mark, run: anchor } : { highWaterMs: mark })}\n`,
      );
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
