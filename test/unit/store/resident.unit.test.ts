import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../../src/store/audit/audit-log.js';
import { FileLabStore } from '../../../src/store/file-lab-store.js';
import type { StoreData, UserRecord } from '../../../src/store/schema.js';

/**
 * The resident writer (the security service while a lab runs): the store kept in memory, the
 * audit chain's head kept and its lock held between writes. Another writer of the same files
 * (another LabStore here, another process in test/integration/store/resident) must never be lost
 * or forked, and what a write acknowledged must be in the files.
 */

let home: string;
beforeEach(async () => {
  home = await mkdtemp(join(tmpdir(), 'tms-resident-'));
});
afterEach(async () => {
  await rm(home, { recursive: true, force: true });
});

const user = (name: string): UserRecord => ({
  name,
  role: 'r',
  password: 'x',
  keys: [],
  createdAt: 't',
  updatedAt: 't',
});

function addTo(data: StoreData, name: string): void {
  data.users[name] = user(name);
}

async function onDisk(): Promise<StoreData> {
  return JSON.parse(await readFile(join(home, 'store.json'), 'utf8')) as StoreData;
}

describe('LabStore, resident', () => {
  it('has each acknowledged write in store.json and audit.jsonl when it resolves', async () => {
    const store = new FileLabStore(home, { resident: true });
    try {
      for (let i = 0; i < 5; i++) {
        await store.update((d) => addTo(d, `u${i}`));
        expect(Object.keys((await onDisk()).users)).toContain(`u${i}`);
        await store.audit({ actor: 'test', action: `test.${i}`, outcome: 'ok' });
        expect(await readFile(join(home, 'audit.jsonl'), 'utf8')).toContain(`"test.${i}"`);
      }
    } finally {
      await store.close();
    }
  });

  it('hands out frozen snapshots that later writes do not change', async () => {
    const store = new FileLabStore(home, { resident: true });
    await store.update((d) => addTo(d, 'a'));
    const before = await store.data();
    expect(Object.isFrozen(before.users.a)).toBe(true);
    expect(() => {
      (before.users as Record<string, UserRecord>).b = user('b');
    }).toThrow(TypeError);
    await store.update((d) => addTo(d, 'b'));
    expect(Object.keys(before.users)).toEqual(['a']);
    expect(Object.keys((await store.data()).users).sort()).toEqual(['a', 'b']);
  });

  it('sees writes by another writer of the file and never overwrites them', async () => {
    const resident = new FileLabStore(home, { resident: true });
    const other = new FileLabStore(home);
    await resident.update((d) => addTo(d, 'r0'));
    await resident.data(); // cached now
    await other.update((d) => addTo(d, 'o0'));
    expect(Object.keys((await resident.data()).users).sort()).toEqual(['o0', 'r0']);
    // Interleaved, and concurrent: every write of both survives.
    await Promise.all([
      ...Array.from({ length: 15 }, (_, i) => resident.update((d) => addTo(d, `r${i + 1}`))),
      ...Array.from({ length: 15 }, (_, i) => other.update((d) => addTo(d, `o${i + 1}`))),
    ]);
    expect(Object.keys((await onDisk()).users)).toHaveLength(32);
    expect(Object.keys((await resident.data()).users)).toHaveLength(32);
  });

  it('keeps the audit chain whole when another writer appends between its writes', async () => {
    const resident = new FileLabStore(home, { resident: true });
    const other = new AuditLog({ file: join(home, 'audit.jsonl') });
    for (let round = 0; round < 4; round++) {
      await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          resident.audit({ actor: 'svc', action: `r.${round}.${i}`, outcome: 'ok' }),
        ),
      );
      // Waits for the resident writer's lock (held a moment after its writes), then appends.
      await other.append({ at: 't', actor: 'cli', action: `o.${round}`, outcome: 'ok' });
    }
    await resident.close();
    const v = await resident.verifyAudit();
    expect(v).toMatchObject({ ok: true, entries: 44, problems: [] });
    const records = await resident.auditRecords();
    expect(records.map((r) => r.seq)).toEqual(Array.from({ length: 44 }, (_, i) => i));
  });

  it('writes appends that arrive together as one group and chains them in order', async () => {
    const log = new AuditLog({ file: join(home, 'audit.jsonl'), holdLockMs: 50 });
    const records = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        log.append({ at: 't', actor: 'a', action: `g.${i}`, outcome: 'ok' }),
      ),
    );
    await log.close();
    expect(records.map((r) => r.action)).toEqual(Array.from({ length: 200 }, (_, i) => `g.${i}`));
    expect(records.map((r) => r.seq)).toEqual(Array.from({ length: 200 }, (_, i) => i));
    expect(await log.verify()).toMatchObject({ ok: true, entries: 200 });
  });

  it('drops a line cut by a crash and chains on from the last whole record', async () => {
    const file = join(home, 'audit.jsonl');
    const first = new AuditLog({ file, holdLockMs: 50 });
    await first.append({ at: 't', actor: 'a', action: 'one', outcome: 'ok' });
    await first.close();
    await appendFile(file, '{"v":1,"seq":1,"act'); // a writer killed mid-write
    const second = new AuditLog({ file, holdLockMs: 50 });
    await second.append({ at: 't', actor: 'a', action: 'two', outcome: 'ok' });
    await second.close();
    expect(await second.verify()).toMatchObject({ ok: true, entries: 2 });
  });

  it('refuses to chain onto a log replaced by one it cannot read, and recovers when it is fixed', async () => {
    const file = join(home, 'audit.jsonl');
    const log = new AuditLog({ file });
    await log.append({ at: 't', actor: 'a', action: 'one', outcome: 'ok' });
    const good = await readFile(file, 'utf8');
    await writeFile(file, 'not json\n');
    await expect(log.append({ at: 't', actor: 'a', action: 'two', outcome: 'ok' })).rejects.toMatchObject({
      code: 'STORE_CORRUPT',
    });
    await writeFile(file, good);
    await log.append({ at: 't', actor: 'a', action: 'three', outcome: 'ok' });
    expect(await log.verify()).toMatchObject({ ok: true, entries: 2 });
  });
});
