import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../../src/store/audit/audit-log.js';
import { AUDIT_GENESIS, recordHash } from '../../../src/store/audit/record.js';
import { FileLabStore } from '../../../src/store/file-lab-store.js';

let home: string;
let file: string;
beforeEach(async () => {
  home = await mkdtemp(join(tmpdir(), 'tms-audit-'));
  file = join(home, 'audit.jsonl');
});
afterEach(async () => {
  await rm(home, { recursive: true, force: true });
});

async function writeFive(): Promise<AuditLog> {
  const log = new AuditLog({ file });
  for (let i = 0; i < 5; i++) {
    await log.append({ at: `t${i}`, actor: 'cli', action: `test.${i}`, outcome: 'ok', detail: { i } });
  }
  return log;
}

async function lines(): Promise<string[]> {
  return (await readFile(file, 'utf8')).trimEnd().split('\n');
}

async function rewrite(ls: string[]): Promise<void> {
  await writeFile(file, `${ls.join('\n')}\n`);
}

describe('AuditLog (hash chain)', () => {
  it('chains each record to the one before, from the genesis, 0600, and verifies clean', async () => {
    const log = await writeFive();
    const records = await log.records();
    expect(records.map((r) => r.seq)).toEqual([0, 1, 2, 3, 4]);
    expect(records[0]?.prev).toBe(AUDIT_GENESIS);
    for (let i = 1; i < 5; i++) expect(records[i]?.prev).toBe(records[i - 1]?.hash);
    for (const r of records) expect(recordHash(r)).toBe(r.hash);
    expect(new Set(records.map((r) => r.id)).size).toBe(5);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const v = await log.verify();
    expect(v).toMatchObject({ ok: true, entries: 5, head: records[4]?.hash, problems: [] });
  });

  it('detects an edited record and names it by index and id', async () => {
    const log = await writeFive();
    const ls = await lines();
    const victim = JSON.parse(ls[2] as string);
    victim.outcome = 'denied';
    ls[2] = JSON.stringify(victim);
    await rewrite(ls);
    const v = await log.verify();
    expect(v.ok).toBe(false);
    expect(v.problems).toEqual([expect.objectContaining({ index: 2, id: victim.id, kind: 'edited' })]);
  });

  it('detects an edited record whose own hash was recomputed: the next one no longer chains', async () => {
    const log = await writeFive();
    const ls = await lines();
    const victim = JSON.parse(ls[1] as string);
    victim.actor = 'someone-else';
    victim.hash = recordHash(victim);
    ls[1] = JSON.stringify(victim);
    await rewrite(ls);
    const next = JSON.parse(ls[2] as string);
    const v = await log.verify();
    expect(v.problems).toEqual([expect.objectContaining({ index: 2, id: next.id, kind: 'chain-broken' })]);
  });

  it('detects a removed record', async () => {
    const log = await writeFive();
    const ls = await lines();
    const after = JSON.parse(ls[3] as string);
    ls.splice(2, 1);
    await rewrite(ls);
    const v = await log.verify();
    expect(v.ok).toBe(false);
    expect(v.problems[0]).toMatchObject({ index: 2, id: after.id, kind: 'removed' });
  });

  it('detects reordered records', async () => {
    const log = await writeFive();
    const ls = await lines();
    const [a, b] = [ls[1] as string, ls[3] as string];
    ls[1] = b;
    ls[3] = a;
    await rewrite(ls);
    const v = await log.verify();
    expect(v.ok).toBe(false);
    expect(v.problems[0]).toMatchObject({ index: 1, id: JSON.parse(b).id, kind: 'removed' });
    expect(v.problems.some((p) => p.kind === 'reordered' && p.index === 2)).toBe(true);
  });

  it('reports an unreadable line as malformed and goes on', async () => {
    const log = await writeFive();
    const ls = await lines();
    ls[3] = '{"not": "a record"';
    await rewrite(ls);
    const v = await log.verify();
    expect(v.problems).toEqual([expect.objectContaining({ index: 3, kind: 'malformed' })]);
  });

  it('drops a line cut by a crash before appending, and still verifies', async () => {
    const log = await writeFive();
    await writeFile(file, '{"v":1,"seq":5,"id":"half', { flag: 'a' });
    const r = await log.append({ at: 't5', actor: 'cli', action: 'after.crash', outcome: 'ok' });
    expect(r.seq).toBe(5);
    expect((await log.verify()).ok).toBe(true);
    expect(await lines()).toHaveLength(6);
  });

  it('refuses to chain onto an unreadable last record (STORE_CORRUPT), leaving the file alone', async () => {
    await writeFive();
    const ls = await lines();
    ls[4] = 'garbage';
    await rewrite(ls);
    const before = await readFile(file, 'utf8');
    await expect(
      new AuditLog({ file }).append({ at: 't', actor: 'cli', action: 'x', outcome: 'ok' }),
    ).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
    expect(await readFile(file, 'utf8')).toBe(before);
  });

  it('keeps the chain whole under concurrent appends from one process', async () => {
    const log = new AuditLog({ file });
    await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        log.append({ at: 't', actor: 'cli', action: `c.${i}`, outcome: 'ok' }),
      ),
    );
    const v = await log.verify();
    expect(v).toMatchObject({ ok: true, entries: 50 });
  });

  it('migrates a schema-1 audit.json once: its entries, then a marker, chained from the genesis', async () => {
    await mkdir(home, { recursive: true });
    const legacy = {
      schemaVersion: 1,
      entries: [
        { at: 'a', actor: 'cli', action: 'user.add', target: 'alice', outcome: 'ok' },
        { at: 'b', actor: '127.0.0.1', action: 'auth.password', outcome: 'denied', code: 'AUTH_FAILED' },
      ],
    };
    await writeFile(join(home, 'audit.json'), JSON.stringify(legacy));
    const store = new FileLabStore(home);
    // Reading does not migrate (readers never write) but sees the legacy entries.
    expect(await store.auditEntries()).toEqual(legacy.entries);
    expect((await store.verifyAudit()).legacyEntries).toBe(2);
    await store.audit({ actor: 'cli', action: 'after', outcome: 'ok', at: 'c' });
    const entries = await store.auditEntries();
    expect(entries.map((e) => e.action)).toEqual(['user.add', 'auth.password', 'audit.migrate', 'after']);
    expect(entries[2]?.detail).toMatchObject({ entries: 2 });
    expect(await store.verifyAudit()).toMatchObject({ ok: true, entries: 4 });
    await expect(stat(join(home, 'audit.json'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(JSON.parse(await readFile(join(home, 'audit.json.migrated'), 'utf8'))).toEqual(legacy);
  });
});
