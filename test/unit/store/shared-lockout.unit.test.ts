import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SharedLockout } from '../../../src/defences/shared-lockout.js';
import { SMART_LOCKOUT_POLICY } from '../../../src/defences/smart-lockout.js';
import { PostgresLabStore } from '../../../src/store/postgres/postgres-lab-store.js';
import { requirePostgresOrSkip, startTestPostgres, type TestPostgres } from '../../support/postgres.js';

const run = requirePostgresOrSkip('the smart lock-out shared in PostgreSQL');

const ATTACKER = '127.0.0.2';
const HOME = '127.0.0.1';

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code ?? 'THREW';
  }
}

describe.runIf(run)('the smart lock-out in PostgreSQL, one budget for every replica (issue 17)', () => {
  let server: TestPostgres;
  let home: string;
  let url: string;
  const stores: PostgresLabStore[] = [];
  const clock = { now: 1_900_000_000_000 };
  /** one lock-out per replica, each with its own store object, as each security service has */
  const replica = (clockOf: 'test' | 'database' = 'test'): SharedLockout => {
    const store = new PostgresLabStore(home, { url, passwordFile: server.passwordFile });
    stores.push(store);
    const table = store.replicas.lockout;
    return new SharedLockout({ table, ...(clockOf === 'test' ? { now: () => clock.now } : {}) });
  };

  beforeAll(async () => {
    server = await startTestPostgres();
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
  }, 60_000);
  beforeEach(async () => {
    home = await mkdtemp(join(tmpdir(), 'tms-shared-lockout-'));
    url = await server.freshDatabase();
    clock.now = 1_900_000_000_000;
  });
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close()));
    await rm(home, { recursive: true, force: true });
  });

  it('failures counted at two replicas add up: the 5th blocks the pair at both, with the same back-off', async () => {
    const [a, b] = [replica(), replica()];
    for (let i = 0; i < 4; i++) await (i % 2 === 0 ? a : b).failed('alice', ATTACKER);
    expect(await codeOf(a.check('alice', ATTACKER))).toBeUndefined();
    expect(await codeOf(b.check('alice', ATTACKER))).toBeUndefined();
    await a.failed('alice', ATTACKER);
    expect(await codeOf(a.check('alice', ATTACKER))).toBe('ACCOUNT_LOCKED');
    expect(await codeOf(b.check('alice', ATTACKER))).toBe('ACCOUNT_LOCKED');
    // alice from her own address, and bob from the attacker's, are not held back.
    expect(await codeOf(b.check('alice', HOME))).toBeUndefined();
    expect(await codeOf(b.check('bob', ATTACKER))).toBeUndefined();
    // 1 s, then the 6th failure (at the other replica) blocks for 2 s.
    clock.now += 1000;
    expect(await codeOf(b.check('alice', ATTACKER))).toBeUndefined();
    await b.failed('alice', ATTACKER);
    clock.now += 1999;
    expect(await codeOf(a.check('alice', ATTACKER))).toBe('ACCOUNT_LOCKED');
    clock.now += 1;
    expect(await codeOf(a.check('alice', ATTACKER))).toBeUndefined();
  });

  it('no failure is lost when replicas count at once: 40 concurrent failures over 4 replicas count 40', async () => {
    const replicas = [replica(), replica(), replica(), replica()];
    await Promise.all(Array.from({ length: 40 }, (_, i) => replicas[i % 4]?.failed('alice', ATTACKER)));
    const db = await server.admin(new URL(url).pathname.slice(1));
    try {
      const r = await db.query<{ meter: string; count: number; block_ms: string }>(
        'SELECT meter, count, block_ms FROM login_failures ORDER BY meter',
      );
      // pair: 40 - 5 doublings, capped at 15 min; source: 40 - 20, capped as well.
      expect(r.rows).toEqual([
        { meter: 'pair', count: 40, block_ms: String(15 * 60_000) },
        { meter: 'source', count: 40, block_ms: String(15 * 60_000) },
      ]);
    } finally {
      await db.end();
    }
  });

  it('a familiar source is familiar at every replica; a login at one forgives failures counted at another', async () => {
    const [a, b] = [replica(), replica()];
    await a.succeeded('alice', HOME);
    // 25 failures for other names from alice's address, counted at b: the source is blocked...
    for (let i = 0; i < 25; i++) await b.failed(`user-${i}`, HOME);
    expect(await codeOf(a.check('bob', HOME))).toBe('RATE_LIMITED');
    // ...but not for alice, who logged in from it at a.
    expect(await codeOf(b.check('alice', HOME))).toBeUndefined();
    expect(await codeOf(a.check('alice', HOME))).toBeUndefined();

    for (let i = 0; i < 4; i++) await a.failed('carol', '127.0.0.9');
    await b.succeeded('carol', '127.0.0.9');
    await a.failed('carol', '127.0.0.9');
    // forgiven at b: the count started again, one failure is not a block
    expect(await codeOf(a.check('carol', '127.0.0.9'))).toBeUndefined();
  });

  it('failures are forgotten an hour after the last; a clock stepped back makes no block longer than its length', async () => {
    const [a, b] = [replica(), replica()];
    for (let i = 0; i < 5; i++) await a.failed('alice', ATTACKER);
    clock.now += 3600_000 + 1;
    await b.failed('alice', ATTACKER);
    expect(await codeOf(b.check('alice', ATTACKER))).toBeUndefined();

    for (let i = 0; i < 4; i++) await a.failed('alice', ATTACKER);
    expect(await codeOf(a.check('alice', ATTACKER))).toBe('ACCOUNT_LOCKED');
    clock.now -= 3600_000;
    expect(await codeOf(a.check('alice', ATTACKER))).toBe('ACCOUNT_LOCKED');
    clock.now += 1000;
    expect(await codeOf(b.check('alice', ATTACKER))).toBeUndefined();
  });

  it('the sweep forgets only what refuses nothing any more', async () => {
    const [a, b] = [replica(), replica()];
    for (let i = 0; i < 5; i++) await a.failed('alice', ATTACKER);
    await a.failed('old', '127.0.0.5');
    await a.succeeded('alice', HOME);
    const store = stores[0] as PostgresLabStore;
    const rows = async () => {
      const db = await server.admin(new URL(url).pathname.slice(1));
      try {
        const f = await db.query<{ key: string }>(
          'SELECT meter, key FROM login_failures ORDER BY meter, key',
        );
        const fam = await db.query<{ key: string }>('SELECT key FROM login_familiar');
        return { failures: f.rows.map((r) => r.key), familiar: fam.rows.map((r) => r.key) };
      } finally {
        await db.end();
      }
    };
    await store.replicas.lockout.sweep(SMART_LOCKOUT_POLICY, clock.now + 1000);
    expect((await rows()).failures).toHaveLength(4);
    // An hour and a bit later: every failure is forgotten; alice's familiar address stays 30 days.
    await store.replicas.lockout.sweep(SMART_LOCKOUT_POLICY, clock.now + 3600_000 + 2000);
    expect(await rows()).toEqual({ failures: [], familiar: [`${HOME} alice`] });
    clock.now += 3600_000 + 2000;
    expect(await codeOf(b.check('alice', ATTACKER))).toBeUndefined();
  });

  it("on the database's own clock (no clock given, as the lab runs it): blocked at once, at every replica", async () => {
    const [a, b] = [replica('database'), replica('database')];
    for (let i = 0; i < 5; i++) await (i % 2 ? a : b).failed('dave', ATTACKER);
    expect(await codeOf(a.check('dave', ATTACKER))).toBe('ACCOUNT_LOCKED');
    expect(await codeOf(b.check('dave', ATTACKER))).toBe('ACCOUNT_LOCKED');
  });
});
