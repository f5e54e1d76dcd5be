import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { TrustedMsError } from '../../../src/errors.js';
import type { Role } from '../../../src/policy/types.js';
import { AUDIT_GENESIS, recordHash } from '../../../src/store/audit/record.js';
import { POSTGRES_SCHEMA_VERSION } from '../../../src/store/postgres/migrations.js';
import { PostgresLabStore } from '../../../src/store/postgres/postgres-lab-store.js';
import { STORE_SCHEMA_VERSION } from '../../../src/store/schema.js';
import { requirePostgresOrSkip, startTestPostgres, type TestPostgres } from '../../support/postgres.js';

const run = requirePostgresOrSkip('the PostgreSQL store unit tests');

const roles = (): Record<string, Role> => ({
  reader: { name: 'reader', description: 'reads', grants: [{ database: 'catalog', actions: ['read'] }] },
});

async function caught(p: Promise<unknown>): Promise<TrustedMsError> {
  try {
    await p;
  } catch (err) {
    return err as TrustedMsError;
  }
  throw new Error('expected a rejection');
}

describe.runIf(run)('PostgresLabStore', () => {
  let server: TestPostgres;
  let home: string;
  let url: string;
  let db: pg.Client;
  const stores: PostgresLabStore[] = [];
  const open = (opts: { url?: string; password?: boolean } = {}): PostgresLabStore => {
    const store = new PostgresLabStore(
      home,
      { url: opts.url ?? url, ...(opts.password === false ? {} : { passwordFile: server.passwordFile }) },
      { seedRoles: roles, now: () => new Date('2030-01-02T03:04:05.000Z') },
    );
    stores.push(store);
    return store;
  };

  beforeAll(async () => {
    server = await startTestPostgres();
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
  }, 60_000);
  beforeEach(async () => {
    home = await mkdtemp(join(tmpdir(), 'tms-pgstore-'));
    url = await server.freshDatabase();
    db = await server.admin(new URL(url).pathname.slice(1));
  });
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close()));
    await db.end();
    await rm(home, { recursive: true, force: true });
  });

  describe('the document', () => {
    it('reads as its seed until the first write, which creates it with the seed once', async () => {
      const store = open();
      expect(await store.data()).toEqual({
        schemaVersion: STORE_SCHEMA_VERSION,
        users: {},
        roles: roles(),
        services: {},
      });
      const stored = await db.query('SELECT data FROM store_document');
      expect(stored.rows).toEqual([{ data: null }]);
      await store.update((d) => {
        delete d.roles.reader;
      });
      expect((await open().data()).roles).toEqual({});
    });

    it('writes nothing when fn throws, and passes its error on', async () => {
      const store = open();
      await store.update((d) => {
        d.roles.writer = { name: 'writer', description: 'w', grants: [] };
      });
      const err = await caught(
        store.update((d) => {
          delete d.roles.writer;
          throw new Error('changed my mind');
        }),
      );
      expect(err.message).toBe('changed my mind');
      expect(Object.keys((await store.data()).roles)).toContain('writer');
    });

    it('loses no update: two store objects incrementing one counter 2 x 40 times at once', async () => {
      const a = open();
      const b = open();
      await a.update((d) => {
        d.roles.counter = { name: 'counter', description: '0', grants: [] };
      });
      const increment = (s: PostgresLabStore) =>
        s.update((d) => {
          const role = d.roles.counter as Role;
          role.description = String(Number(role.description) + 1);
        });
      await Promise.all(Array.from({ length: 40 }, () => [increment(a), increment(b)]).flat());
      expect((await open().data()).roles.counter?.description).toBe('80');
    });

    it('keeps the document as text, and refuses one that is not JSON (STORE_CORRUPT)', async () => {
      const store = open();
      await store.update((d) => {
        d.roles.x = { name: 'x', description: 'x', grants: [] };
      });
      await db.query("UPDATE store_document SET data = '{not json'");
      expect((await caught(store.data())).code).toBe('STORE_CORRUPT');
      expect((await caught(store.update(() => undefined))).code).toBe('STORE_CORRUPT');
      expect((await db.query('SELECT data FROM store_document')).rows[0].data).toBe('{not json');
    });
  });

  describe('the schema', () => {
    it('is migrated at the first use, once, and recorded with its version', async () => {
      await Promise.all([open().data(), open().data(), open().data()]);
      const v = await db.query('SELECT version FROM trusted_ms_schema');
      expect(v.rows).toEqual([{ version: POSTGRES_SCHEMA_VERSION }]);
    });

    it('refuses a schema newer than this code knows (STORE_VERSION_UNSUPPORTED), leaving it untouched', async () => {
      await open().data();
      await db.query('UPDATE trusted_ms_schema SET version = $1', [POSTGRES_SCHEMA_VERSION + 1]);
      const store = open();
      const err = await caught(store.update(() => undefined));
      expect(err.code).toBe('STORE_VERSION_UNSUPPORTED');
      expect(err.message).toMatch(/schema version \d+; this trusted-ms reads up to \d+/);
      expect((await db.query('SELECT version FROM trusted_ms_schema')).rows[0].version).toBe(
        POSTGRES_SCHEMA_VERSION + 1,
      );
      expect((await db.query('SELECT data FROM store_document')).rows[0].data).toBeNull();
    });

    it('refuses a store document of a newer schemaVersion, as the file store does', async () => {
      await open().data();
      await db.query('UPDATE store_document SET data = $1', [
        JSON.stringify({ schemaVersion: STORE_SCHEMA_VERSION + 1, users: {}, roles: {}, services: {} }),
      ]);
      expect((await caught(open().data())).code).toBe('STORE_VERSION_UNSUPPORTED');
    });
  });

  describe('connection failures', () => {
    it('a URL where nothing listens: STORE_UNAVAILABLE, one line, the password not in it', async () => {
      const { freePorts } = await import('../../../src/lab/ports.js');
      const [port] = (await freePorts(1)) as [number];
      const err = await caught(open({ url: `postgres://trusted_ms:s3cret-pw@127.0.0.1:${port}/x` }).data());
      expect(err.code).toBe('STORE_UNAVAILABLE');
      expect(err.message).toMatch(new RegExp(`127\\.0\\.0\\.1:${port}.*ECONNREFUSED`));
      expect(err.message).not.toMatch(/s3cret-pw/);
      expect(err.message).not.toMatch(/\n/);
    });

    it('a wrong password: STORE_AUTH_FAILED, the password not in it', async () => {
      const u = new URL(url);
      u.password = 'wrong-password-xyz';
      const err = await caught(open({ url: u.toString(), password: false }).data());
      expect(err.code).toBe('STORE_AUTH_FAILED');
      expect(err.message).not.toMatch(/wrong-password-xyz/);
    });

    it('a URL that is not postgres://: USAGE', async () => {
      expect((await caught(open({ url: 'mysql://h/x' }).data())).code).toBe('USAGE');
    });

    it('a store object outlives a failed first use: it connects when the server answers', async () => {
      const store = open({ url: url.replace(`:${server.port}/`, ':1/') });
      expect((await caught(store.data())).code).toBe('STORE_UNAVAILABLE');
      // (the same object on the right URL is not possible; a second object shows nothing was cached)
      expect((await open().data()).roles).toEqual(roles());
    });
  });

  describe('the audit log (the file audit log cases)', () => {
    async function writeFive(): Promise<PostgresLabStore> {
      const store = open();
      for (let i = 0; i < 5; i++) {
        await store.audit({ at: `t${i}`, actor: 'cli', action: `test.${i}`, outcome: 'ok', detail: { i } });
      }
      return store;
    }
    const textOf = async (seq: number): Promise<string> =>
      (await db.query('SELECT record FROM audit_log WHERE seq = $1', [seq])).rows[0].record;
    const setText = (seq: number, text: string) =>
      db.query('UPDATE audit_log SET record = $2 WHERE seq = $1', [seq, text]);

    it('chains each record to the one before, from the genesis, and verifies clean', async () => {
      const store = await writeFive();
      const records = await store.auditRecords();
      expect(records.map((r) => r.seq)).toEqual([0, 1, 2, 3, 4]);
      expect(records[0]?.prev).toBe(AUDIT_GENESIS);
      for (let i = 1; i < 5; i++) expect(records[i]?.prev).toBe(records[i - 1]?.hash);
      for (const r of records) expect(recordHash(r)).toBe(r.hash);
      expect(new Set(records.map((r) => r.id)).size).toBe(5);
      // The same text a line of audit.jsonl would hold, not jsonb (which reorders keys).
      expect(await textOf(2)).toBe(JSON.stringify(records[2]));
      expect(await store.verifyAudit()).toMatchObject({
        ok: true,
        entries: 5,
        head: records[4]?.hash,
        problems: [],
      });
      expect((await store.auditEntries()).map((e) => e.action)).toEqual(records.map((r) => r.action));
    });

    it('detects an edited record and names it by index and id', async () => {
      const store = await writeFive();
      const victim = JSON.parse(await textOf(2));
      victim.outcome = 'denied';
      await setText(2, JSON.stringify(victim));
      const v = await store.verifyAudit();
      expect(v.ok).toBe(false);
      expect(v.problems).toEqual([expect.objectContaining({ index: 2, id: victim.id, kind: 'edited' })]);
    });

    it('detects an edited record whose own hash was recomputed: the next one no longer chains', async () => {
      const store = await writeFive();
      const victim = JSON.parse(await textOf(1));
      victim.actor = 'someone-else';
      victim.hash = recordHash(victim);
      await setText(1, JSON.stringify(victim));
      const next = JSON.parse(await textOf(2));
      const v = await store.verifyAudit();
      expect(v.problems).toEqual([expect.objectContaining({ index: 2, id: next.id, kind: 'chain-broken' })]);
    });

    it('detects a removed record', async () => {
      const store = await writeFive();
      const after = JSON.parse(await textOf(3));
      await db.query('DELETE FROM audit_log WHERE seq = 2');
      const v = await store.verifyAudit();
      expect(v.ok).toBe(false);
      expect(v.problems[0]).toMatchObject({ index: 2, id: after.id, kind: 'removed' });
    });

    it('detects reordered records', async () => {
      const store = await writeFive();
      const [a, b] = [await textOf(1), await textOf(3)];
      // The rows keep their seq column; their records trade places.
      await db.query('UPDATE audit_log SET prev = prev || seq, hash = hash || seq WHERE seq IN (1, 3)');
      await setText(1, b);
      await setText(3, a);
      const v = await store.verifyAudit();
      expect(v.ok).toBe(false);
      expect(v.problems[0]).toMatchObject({ index: 1, id: JSON.parse(b).id, kind: 'removed' });
      expect(v.problems.some((p) => p.kind === 'reordered' && p.index === 2)).toBe(true);
    });

    it('reports an unreadable record as malformed and goes on', async () => {
      const store = await writeFive();
      await setText(3, '{"not": "a record"');
      const v = await store.verifyAudit();
      expect(v.problems).toEqual([expect.objectContaining({ index: 3, kind: 'malformed' })]);
    });

    it('refuses to chain onto an unreadable last record (STORE_CORRUPT), leaving the table alone', async () => {
      await writeFive();
      await setText(4, 'garbage');
      const err = await caught(open().audit({ at: 't', actor: 'cli', action: 'x', outcome: 'ok' }));
      expect(err.code).toBe('STORE_CORRUPT');
      expect((await db.query('SELECT count(*)::int AS n FROM audit_log')).rows[0].n).toBe(5);
    });

    it('keeps the chain whole under concurrent appends from two store objects', async () => {
      const [a, b] = [open(), open()];
      await Promise.all(
        Array.from({ length: 30 }, (_, i) => [
          a.audit({ at: 't', actor: 'a', action: `a.${i}`, outcome: 'ok' }),
          b.audit({ at: 't', actor: 'b', action: `b.${i}`, outcome: 'ok' }),
        ]).flat(),
      );
      expect(await open().verifyAudit()).toMatchObject({ ok: true, entries: 60, problems: [] });
    });

    it('the database itself refuses a second record at a seq or after the same prev', async () => {
      const store = await writeFive();
      const last = (await store.auditRecords())[4];
      await expect(
        db.query('INSERT INTO audit_log (seq, prev, hash, record) VALUES (5, $1, $2, $3)', [
          last?.prev,
          'x'.repeat(64),
          '{}',
        ]),
      ).rejects.toMatchObject({ code: '23505' });
    });

    it('auditRequired refuses the action with the store code when the log cannot be written', async () => {
      const store = open({ url: url.replace(`:${server.port}/`, ':1/') });
      const err = await caught(store.auditRequired({ actor: 'cli', action: 'user.add', outcome: 'ok' }));
      expect(err.code).toBe('STORE_UNAVAILABLE');
      expect(err.message).toMatch(/^user\.add refused: it cannot be recorded in the audit log: /);
    });

    it('tail: last n, size, and follow from the end sees only what comes after', async () => {
      const store = await writeFive();
      expect((await store.auditLog.last(2)).map((r) => r.seq)).toEqual([3, 4]);
      expect(await store.auditLog.size()).toBe(5);
      const stop = new AbortController();
      const seen: string[] = [];
      const following = (async () => {
        for await (const r of store.auditLog.follow(5, stop.signal, 20)) {
          seen.push(r.action);
          if (seen.length === 2) stop.abort();
        }
      })();
      await store.audit({ actor: 'cli', action: 'after.1', outcome: 'ok' });
      await store.audit({ actor: 'cli', action: 'after.2', outcome: 'ok' });
      await following;
      expect(seen).toEqual(['after.1', 'after.2']);
    });
  });
});
