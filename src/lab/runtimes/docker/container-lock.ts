import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import lockfile from 'proper-lockfile';
import { TrustedMsError } from '../../../errors.js';

/**
 * Measuring a container and removing it never overlap, whichever process does each (the CLI
 * replacing a service, the watchman re-measuring every service). The engine's archive read mounts
 * the container's volumes into its root filesystem for the length of the read; a forced removal
 * at that moment walks into those mounts and fails ("unlinkat .../merged/<bind mount>/...:
 * directory not empty" or "read-only file system"), leaving the container half-removed in
 * "Removal In Progress" (seen on a loaded machine, reproduced with archive reads racing removals).
 *
 * The lock is a folder next to the part's config file, one per container id (a replacement has a
 * new id, so measuring the new container is never held up by removing the old one).
 */
export function containerLockPath(configFile: string, containerId: string): string {
  return join(dirname(configFile), '.engine-locks', containerId.slice(0, 64));
}

/** A removal waits for a measurement under way (a few seconds at most), then holds the lock. */
export async function lockForRemoval(path: string): Promise<() => Promise<void>> {
  return acquire(path, { retries: 60, minTimeout: 100, maxTimeout: 500, factor: 1.2 });
}

/**
 * A measurement does not wait: a container being removed or replaced is "not measurable right
 * now" (MEASUREMENT_DEFERRED), which is no verdict on the service.
 */
export async function lockForMeasure(path: string, service: string): Promise<() => Promise<void>> {
  try {
    return await acquire(path, { retries: 0 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOCKED') {
      throw new TrustedMsError(
        'MEASUREMENT_DEFERRED',
        `${service} is being removed or replaced: not measurable right now`,
        { actions: ['measure again in a moment: trusted-ms service verify'] },
      );
    }
    throw err;
  }
}

async function acquire(
  path: string,
  retries: { retries: number; minTimeout?: number; maxTimeout?: number; factor?: number },
): Promise<() => Promise<void>> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  return lockfile.lock(path, {
    realpath: false,
    // A holder killed mid-operation does not block the container for good.
    stale: 15_000,
    retries,
    // Compromised (the folder removed by lab down, say): the operation it guarded goes on.
    onCompromised: () => undefined,
  });
}
