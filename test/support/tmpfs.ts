import { mkdir, mkdtemp, open, rm, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, it } from 'vitest';

/**
 * A small tmpfs the test mounts itself, to cause a full or read-only disk for real (ENOSPC, EROFS
 * from the kernel, not a mocked fs). Needs root (or CAP_SYS_ADMIN); where mounting is refused the
 * tests that need it are skipped loudly, and under CI=true that skip is a failure.
 */
export interface Tmpfs extends AsyncDisposable {
  dir: string;
  /** Writes a ballast file until the kernel says ENOSPC: the disk is now really full. */
  fill(): Promise<void>;
  /** Removes the ballast: space is back. */
  free(): Promise<void>;
  /** Remounts read-only (`ro`) or read-write again. */
  remount(mode: 'ro' | 'rw'): Promise<void>;
}

export async function mountTmpfs(sizeBytes: number): Promise<Tmpfs> {
  const base = await mkdtemp(join(tmpdir(), 'tms-tmpfs-'));
  const dir = join(base, 'mnt');
  await mkdir(dir);
  const r = await execa('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes},mode=0700`, 'tmpfs', dir], {
    reject: false,
  });
  if (r.exitCode !== 0) {
    await rm(base, { recursive: true, force: true });
    throw new Error(`mount -t tmpfs refused: ${r.stderr || r.exitCode}`);
  }
  const ballast = join(dir, 'ballast');
  return {
    dir,
    async fill() {
      const handle = await open(ballast, 'a');
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      try {
        for (;;) {
          await handle.write(chunk);
        }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      } finally {
        await handle.close();
      }
      // The last chunk may have been taken in part: fill the remainder byte by byte-ish.
      const small = await open(ballast, 'a');
      try {
        for (;;) await small.write(Buffer.alloc(512, 0x61));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      } finally {
        await small.close();
      }
    },
    async free() {
      await rm(ballast, { force: true });
    },
    async remount(mode) {
      // A file still open for writing (a log closing a few ms after its last append) makes the
      // kernel refuse a read-only remount (EBUSY): try again for a moment.
      for (let i = 0; ; i++) {
        const r = await execa('mount', ['-o', `remount,${mode}`, dir], { reject: false });
        if (r.exitCode === 0) return;
        if (i >= 40) throw new Error(`mount -o remount,${mode} ${dir}: ${r.stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    async [Symbol.asyncDispose]() {
      await execa('umount', ['-l', dir], { reject: false });
      await rmdir(dir).catch(() => undefined);
      await rm(base, { recursive: true, force: true });
    },
  };
}

/** Whether this machine lets us mount a tmpfs (probed once, for real). */
export async function canMountTmpfs(): Promise<boolean> {
  try {
    await using _fs = await mountTmpfs(64 * 1024);
    return true;
  } catch {
    return false;
  }
}

/**
 * The suite for `title` when a tmpfs can be mounted; otherwise a loud warning, or under CI=true a
 * failing test (a skipped disk-fault test must never pass unnoticed in CI).
 */
export function describeWithTmpfs(available: boolean, title: string, body: () => void): void {
  if (available) {
    describe(title, body);
    return;
  }
  if (process.env.CI === 'true') {
    describe(title, () => {
      it('needs to mount a tmpfs', () => {
        throw new Error('CI=true but `mount -t tmpfs` is not permitted here: the disk-fault tests must run');
      });
    });
    return;
  }
  console.warn(
    `\n!!! SKIPPED: ${title}.\n!!! It mounts a small tmpfs (needs root or CAP_SYS_ADMIN); CI=true turns this skip into a failure.\n`,
  );
  describe.skip(title, body);
}
