import { mkdir, mkdtemp, rm, stat, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AuditLog } from '../../../src/store/audit/audit-log.js';
import { DEFAULT_LOCK_SETTINGS, lockStoreFile } from '../../../src/store/file-lock.js';

let dir: string;
let file: string;
const quick = { ...DEFAULT_LOCK_SETTINGS, retries: 3, minTimeoutMs: 5, maxTimeoutMs: 10 };

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tms-lock-'));
  file = join(dir, 'home', 'audit.jsonl');
});
afterEach(async () => {
  vi.useRealTimers();
  await rm(dir, { recursive: true, force: true });
});

describe('lockStoreFile', () => {
  it("creates the file's folder, takes <file>.lock and releases it", async () => {
    const lock = await lockStoreFile(file, quick);
    expect((await stat(`${file}.lock`)).isDirectory()).toBe(true);
    expect(lock.compromised).toBeUndefined();
    expect(() => lock.assertHeld('writing')).not.toThrow();
    await lock.release();
    await expect(stat(`${file}.lock`)).rejects.toMatchObject({ code: 'ENOENT' });
    await lock.release(); // a second release (lock already gone) is not an error
  });

  it('answers a fresh lock held by someone else with STORE_LOCKED and the stale-lock hint', async () => {
    await mkdir(`${file}.lock`, { recursive: true });
    const err = await lockStoreFile(file, quick).catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: 'STORE_LOCKED',
      message: `${file} is locked by another writer`,
      actions: [
        'retry in a moment',
        `if no trusted-ms process is running, the lock ${file}.lock is taken over after 5 s`,
      ],
    });
  });

  it('refuses to go on once the lock was lost', async () => {
    const lock = await lockStoreFile(file, { ...quick, staleMs: 2_000 });
    // proper-lockfile checks its lock every staleMs / 2: removed under it, it reports it compromised.
    await rm(`${file}.lock`, { recursive: true });
    await expect.poll(() => lock.compromised, { timeout: 5_000, interval: 100 }).toBeInstanceOf(Error);
    expect(() => lock.assertHeld('writing')).toThrow(
      expect.objectContaining({ code: 'STORE_LOCKED', message: `lost the lock on ${file} before writing` }),
    );
    await lock.release();
  });
});

describe('a writer whose clock runs ahead (the third clock red team, A15)', () => {
  // This process's clock an hour ahead, as libfaketime made the red team's CLI; timers stay real.
  const anHourAhead = () => vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 3_600_000 });

  it('does not take a live lock as stale: its age is read on the file system’s clock too', async () => {
    await mkdir(`${file}.lock`, { recursive: true }); // just taken by another writer
    anHourAhead();
    // Before: proper-lockfile compared the lock's mtime with Date.now() and took it at once.
    const err = await lockStoreFile(file, quick).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'STORE_LOCKED' });
    expect((await stat(`${file}.lock`)).isDirectory()).toBe(true); // still the other writer's
  });

  it('still takes over a lock its holder stopped refreshing (a killed writer)', async () => {
    await mkdir(`${file}.lock`, { recursive: true });
    const old = new Date(Date.now() - 60_000);
    await utimes(`${file}.lock`, old, old);
    anHourAhead();
    const lock = await lockStoreFile(file, quick);
    expect(lock.compromised).toBeUndefined();
    await lock.release();
  });

  it('and on a clock that is right, a killed writer’s lock is taken over at once', async () => {
    await mkdir(`${file}.lock`, { recursive: true });
    const old = new Date(Date.now() - 60_000);
    await utimes(`${file}.lock`, old, old);
    const lock = await lockStoreFile(file, quick);
    await lock.release();
    await expect(stat(`${file}.lock`)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('the audit log takes the same lock', () => {
  it('an append waits for <file>.lock and gives up with STORE_LOCKED, writing nothing', async () => {
    await mkdir(`${file}.lock`, { recursive: true });
    const log = new AuditLog({ file, lock: { retries: 3, minTimeoutMs: 5, maxTimeoutMs: 10 } });
    const err = await log
      .append({ at: new Date().toISOString(), actor: 'a', action: 'user.add', outcome: 'ok' })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: 'STORE_LOCKED',
      actions: expect.arrayContaining(['retry in a moment']),
    });
    await expect(stat(file)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
