import { constants as fsConstants } from 'node:fs';
import { access, statfs } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileError } from '../disk-errors.js';
import { errnoCode, TrustedMsError } from '../errors.js';

/** What `lab status` says about the disk under the lab home. */
export interface DiskCondition {
  path: string;
  /** bytes an unprivileged writer may still use */
  freeBytes: number;
  state: 'ok' | 'low' | 'full' | 'read-only';
}

/** Under this the next few writes (an audit line, a session file) may already fail. */
const FULL_BYTES = 64 * 1024;
/** Warn from here: a lab's logs grow a few MiB an hour under load. */
const LOW_BYTES = 16 * 1024 * 1024;
/** What `lab up` needs at least in the home (configs, CA, copies of the services' code, logs). */
export const LAB_UP_MIN_FREE_BYTES = 8 * 1024 * 1024;

/** The disk under `path` now: free space (statfs) and whether it takes writes (access W_OK). */
export async function diskCondition(path: string): Promise<DiskCondition> {
  const at = await nearestExisting(path);
  const readOnly = await access(at, fsConstants.W_OK).then(
    () => false,
    (err: unknown) => errnoCode(err) === 'EROFS' || errnoCode(err) === 'EACCES',
  );
  const s = await statfs(at);
  const freeBytes = Number(s.bavail) * Number(s.bsize);
  const state = readOnly
    ? 'read-only'
    : freeBytes < FULL_BYTES
      ? 'full'
      : freeBytes < LOW_BYTES
        ? 'low'
        : 'ok';
  return { path, freeBytes, state };
}

/**
 * Before `lab up` starts anything: a home it cannot write, or without room for a lab, is refused
 * with the disk's code at once, instead of a lab that dies half-started.
 */
export async function requireRoomForLab(home: string, needBytes = LAB_UP_MIN_FREE_BYTES): Promise<void> {
  const disk = await diskCondition(home);
  if (disk.state === 'read-only') {
    // The real errno and its hint, as any write in there would get it.
    const err = await access(await nearestExisting(home), fsConstants.W_OK).then(
      () => undefined,
      (e: unknown) => e,
    );
    throw fileError(home, 'start a lab in', err);
  }
  if (disk.freeBytes < needBytes) {
    throw new TrustedMsError(
      'DISK_FULL',
      `cannot start a lab in ${home}: ${formatBytes(disk.freeBytes)} free, a lab needs at least ${formatBytes(needBytes)}`,
      {
        actions: [
          `free space on the file system holding ${home} (see \`df -h ${home}\`)`,
          'or use another lab home with --home',
        ],
      },
    );
  }
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(1)} GiB`;
}

/** `path`, or its closest ancestor that exists (a home not created yet lives on its parent's disk). */
async function nearestExisting(path: string): Promise<string> {
  let at = resolve(path);
  for (;;) {
    const found = await access(at).then(
      () => true,
      () => false,
    );
    if (found || dirname(at) === at) return at;
    at = dirname(at);
  }
}
