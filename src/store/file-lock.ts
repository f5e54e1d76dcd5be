import { randomBytes } from 'node:crypto';
import { rmdir, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import lockfile from 'proper-lockfile';
import { fileError } from '../disk-errors.js';
import { errnoCode, TrustedMsError } from '../errors.js';
import { makeDir } from '../fs-sync.js';

/**
 * The one lock discipline of the store's files (the JSON store and the audit log): a
 * proper-lockfile lock `<file>.lock` next to the file, taken by every writer in every process.
 */

export interface LockSettings {
  /** A lock whose mtime is older than this (ms) is taken over: a writer killed by SIGKILL leaves one. */
  staleMs: number;
  /** Retries of a busy lock, with exponential backoff between minTimeoutMs and maxTimeoutMs. */
  retries: number;
  minTimeoutMs: number;
  maxTimeoutMs: number;
}

/**
 * ~20 s of patience in total (the 12 first waits grow from 5 to 100 ms, then ~140 waits of 100-200 ms):
 * enough for 100 writers queueing on one file at ~3 ms per update, and for a stale lock (5 s) to
 * be taken over.
 */
export const DEFAULT_LOCK_SETTINGS: LockSettings = {
  staleMs: 5_000,
  retries: 150,
  minTimeoutMs: 5,
  maxTimeoutMs: 100,
};

/** A store file's lock while we hold it. */
export interface HeldFileLock {
  /**
   * Set when the lock was taken over (stale) or removed while we held it: another writer may be
   * working on the file since.
   */
  readonly compromised: Error | undefined;
  /** Throws STORE_LOCKED if the lock was lost: a write now could undo or fork another writer's. */
  assertHeld(before: string): void;
  /** Lets go; a lock taken over after our write, or already removed, is not our caller's problem. */
  release(): Promise<void>;
}

/**
 * Creates the file's folder if needed and takes its lock: STORE_LOCKED when another writer keeps
 * it past the retries, a disk fault (DISK_FULL, DISK_READ_ONLY...) at once.
 */
export async function lockStoreFile(file: string, settings: LockSettings): Promise<HeldFileLock> {
  try {
    await makeDir(dirname(file));
  } catch (err) {
    throw fileError(file, 'create the folder of', err);
  }
  let compromised: Error | undefined;
  let release: () => Promise<void>;
  try {
    release = await lockFile(file, settings, (err) => {
      // Recorded, not thrown: proper-lockfile's default throws from a timer and kills the process.
      compromised = err;
    });
  } catch (err) {
    if (errnoCode(err) === 'ELOCKED') {
      throw new TrustedMsError('STORE_LOCKED', `${file} is locked by another writer`, {
        cause: err,
        actions: [
          'retry in a moment',
          `if no trusted-ms process is running, the lock ${file}.lock is taken over after ${Math.round(settings.staleMs / 1000)} s`,
        ],
      });
    }
    throw fileError(file, 'lock', err);
  }
  return {
    get compromised() {
      return compromised;
    },
    assertHeld(before: string) {
      if (compromised === undefined) return;
      throw new TrustedMsError('STORE_LOCKED', `lost the lock on ${file} before ${before}`, {
        cause: compromised,
        actions: ['retry; if it keeps happening, look for another process holding the store'],
      });
    },
    release: () => release().catch(() => undefined),
  };
}

/**
 * proper-lockfile's lock, retried only while another writer holds it (ELOCKED). Its own `retries`
 * retry every error alike: on a read-only or full disk (mkdir of the lock: EROFS, ENOSPC) a write
 * then waited out all ~150 retries (~20 s) before failing, longer than a client waits for the
 * answer. A disk fault is final: it is thrown at once, for the caller to map.
 */
async function lockFile(
  file: string,
  settings: LockSettings,
  onCompromised: (err: Error) => void,
): Promise<() => Promise<void>> {
  const { staleMs, retries, minTimeoutMs, maxTimeoutMs } = settings;
  for (let attempt = 0; ; attempt++) {
    try {
      // proper-lockfile judges no lock stale itself (takeOverIfStale does); it still refreshes ours
      // every staleMs / 2 and reports it compromised when another writer took it.
      return await lockfile.lock(file, {
        realpath: false,
        stale: NEVER_STALE_MS,
        update: Math.max(1000, staleMs / 2),
        retries: 0,
        onCompromised,
      });
    } catch (err) {
      if (errnoCode(err) !== 'ELOCKED') throw err;
      // Bounded: a lock released and taken by another writer between each look would loop.
      if (attempt <= retries && (await takeOverIfStale(file, staleMs))) continue;
      if (attempt >= retries) throw err;
    }
    // The backoff `retry` gave before (factor 1.3, randomized by 1-2x), kept as it was tuned.
    const base = Math.min(maxTimeoutMs, minTimeoutMs * 1.3 ** attempt);
    await new Promise((resolve) => setTimeout(resolve, Math.round(base * (1 + Math.random()))));
  }
}

/** proper-lockfile's `stale` when it must not judge staleness itself (its largest timer value). */
const NEVER_STALE_MS = 2 ** 31 - 1;

/**
 * Removes `<file>.lock` when its holder stopped refreshing it more than `staleMs` ago (a writer
 * killed by SIGKILL), and says whether to try again at once. The lock's age is first read on this
 * process's clock; when that says stale, it is read again against the file system's own clock (the
 * mtime the kernel gives a file written now), because a clock running ahead makes every lock look
 * old: the third clock red team's CLI, 1 h ahead (libfaketime), took a live lock 0.4 s into another
 * writer's 4 s hold, as proper-lockfile's own check (mtime against `Date.now()`) let it.
 */
async function takeOverIfStale(file: string, staleMs: number): Promise<boolean> {
  const lockPath = `${file}.lock`;
  let lockMs: number;
  try {
    lockMs = (await stat(lockPath)).mtimeMs;
  } catch (err) {
    return errnoCode(err) === 'ENOENT'; // released meanwhile: try again at once
  }
  if (Date.now() - lockMs <= staleMs) return false;
  const fsNow = await fileSystemNow(dirname(file), basename(file));
  if (fsNow - lockMs <= staleMs) return false;
  try {
    await rmdir(lockPath);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') return false;
  }
  return true;
}

/**
 * The time as the file system stamps a file written now (ms). A file system that cannot take the
 * probe (read-only, full) fails the lock with that fault at once, as a lock that cannot be made
 * does: waiting out the retries for a lock nobody can remove there helps no one.
 */
async function fileSystemNow(dir: string, name: string): Promise<number> {
  const probe = join(dir, `.${name}.clock-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    await writeFile(probe, '', { flag: 'wx', mode: 0o600 });
    return (await stat(probe)).mtimeMs;
  } finally {
    await unlink(probe).catch(() => undefined);
  }
}
