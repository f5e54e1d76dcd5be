import lockfile from 'proper-lockfile';
import { errnoCode } from '../errors.js';

export interface FileLockRetry {
  staleMs: number;
  retries: number;
  minTimeoutMs: number;
  maxTimeoutMs: number;
}

/**
 * proper-lockfile's lock, retried only while another writer holds it (ELOCKED). Its own `retries`
 * retry every error alike: on a read-only or full disk (mkdir of the lock: EROFS, ENOSPC) a write
 * then waited out all ~150 retries (~20 s) before failing, longer than a client waits for the
 * answer. A disk fault is final: it is thrown at once, for the caller to map.
 */
export async function lockFile(
  file: string,
  settings: FileLockRetry,
  onCompromised: (err: Error) => void,
): Promise<() => Promise<void>> {
  const { staleMs, retries, minTimeoutMs, maxTimeoutMs } = settings;
  for (let attempt = 0; ; attempt++) {
    try {
      return await lockfile.lock(file, { realpath: false, stale: staleMs, retries: 0, onCompromised });
    } catch (err) {
      if (errnoCode(err) !== 'ELOCKED' || attempt >= retries) throw err;
    }
    // The backoff `retry` gave before (factor 1.3, randomized by 1-2x), kept as it was tuned.
    const base = Math.min(maxTimeoutMs, minTimeoutMs * 1.3 ** attempt);
    await new Promise((resolve) => setTimeout(resolve, Math.round(base * (1 + Math.random()))));
  }
}
