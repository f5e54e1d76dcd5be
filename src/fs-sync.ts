import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join, parse, resolve, sep } from 'node:path';
import { errnoCode } from './errors.js';

/** Flushes a folder's entries (a rename into it) to disk, where the platform can; else a no-op. */
export async function syncDir(dir: string): Promise<void> {
  try {
    const handle = await open(dir, fsConstants.O_RDONLY);
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // Not every platform can fsync a folder; the files themselves are already on disk.
  }
}

/**
 * Replaces `file` with `text` so that a crash at any moment leaves the old content or the new one,
 * and the new one is on disk when this resolves: a temp file (its own random name, created with
 * `mode`) written and fsynced, renamed over `file`, then the folder fsynced for the rename.
 */
export async function writeFileDurably(file: string, text: string, mode = 0o600): Promise<void> {
  const tmp = join(dirname(file), `.${basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const handle = await open(tmp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, mode);
    try {
      await handle.writeFile(text, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await syncDir(dirname(file));
}

/**
 * `mkdir -p` with the OS's real cause on failure. Node's recursive mkdir answers ENOENT where a
 * folder on the way could not be made because the disk is read-only (EROFS) or full: the folders
 * are then made one at a time, which fails with the real errno, for the caller to map.
 */
export async function makeDir(dir: string, mode = 0o700): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode });
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
    const abs = resolve(dir);
    const parts = abs.slice(parse(abs).root.length).split(sep).filter(Boolean);
    let path = parse(abs).root;
    for (const part of parts) {
      path = join(path, part);
      try {
        await mkdir(path, { mode });
      } catch (stepErr) {
        if (errnoCode(stepErr) !== 'EEXIST') throw stepErr;
      }
    }
    throw err;
  }
}
