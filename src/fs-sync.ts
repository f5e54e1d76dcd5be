import { constants as fsConstants } from 'node:fs';
import { open } from 'node:fs/promises';

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
