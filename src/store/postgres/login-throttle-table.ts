import type { LockoutReading, LockoutTable } from '../../defences/shared-lockout.js';
import type { SmartLockoutPolicy } from '../../defences/smart-lockout.js';
import type { PostgresConnection } from './connection.js';

/**
 * The smart lock-out's meters (migration 3): `login_failures` (one row per (meter, key): 'pair' is
 * "source user", 'source' the address) and `login_familiar` (one row per "source user"). Each
 * change is one statement: a failure is one INSERT ... ON CONFLICT DO UPDATE over both meters,
 * whose new count and block are computed from the row under its lock, so replicas counting at once
 * never lose a failure (no read-modify-write in the application). Times are ms on the caller's
 * clock when it gives one (`at`), else the database's, one clock for every replica.
 */

/** `$n` as the statement's now: the caller's clock or the server's. */
const nowFrom = (n: number): string =>
  `COALESCE($${n}::bigint, floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint)`;

// In ON CONFLICT DO UPDATE, `f` is the row found and EXCLUDED the new failure (its last_ms is now).
const COUNT = `(CASE WHEN EXCLUDED.last_ms - f.last_ms > $5::bigint THEN 1 ELSE f.count + 1 END)`;
const FREE = `(CASE WHEN f.meter = 'pair' THEN $3::integer ELSE $4::integer END)`;
/** base x 2^(count - free), at most max; the exponent is capped so the power stays a number */
const BLOCK = (count: string, free: string) =>
  `(CASE WHEN ${count} >= ${free} THEN LEAST($7::bigint, ($6::bigint * power(2, LEAST(${count} - ${free}, 40)))::bigint) ELSE 0 END)`;

const FAIL = `
WITH n AS (SELECT ${nowFrom(8)} AS now)
INSERT INTO login_failures AS f (meter, key, count, last_ms, blocked_until_ms, block_ms)
SELECT m.meter, m.key, 1, n.now,
       CASE WHEN ${BLOCK('1', 'm.free')} > 0 THEN n.now + ${BLOCK('1', 'm.free')} ELSE 0 END,
       ${BLOCK('1', 'm.free')}
  FROM n, (VALUES ('pair', $1::text, $3::integer), ('source', $2::text, $4::integer)) AS m(meter, key, free)
ON CONFLICT (meter, key) DO UPDATE SET
  count = ${COUNT},
  last_ms = EXCLUDED.last_ms,
  block_ms = ${BLOCK(COUNT, FREE)},
  blocked_until_ms = CASE WHEN ${BLOCK(COUNT, FREE)} > 0 THEN EXCLUDED.last_ms + ${BLOCK(COUNT, FREE)} ELSE 0 END`;

// A block longer from now than its own length means the clock went back: it is cut to its length
// from now, in the table too (the one write a read can make, and only after a clock step).
const READ = `
WITH n AS (SELECT ${nowFrom(3)} AS now),
cut AS (
  UPDATE login_failures f SET blocked_until_ms = n.now + f.block_ms
    FROM n
   WHERE ((f.meter = 'pair' AND f.key = $1) OR (f.meter = 'source' AND f.key = $2))
     AND f.blocked_until_ms - n.now > f.block_ms
  RETURNING 1
)
SELECT n.now,
       LEAST(p.blocked_until_ms, n.now + p.block_ms) AS pair_until,
       LEAST(s.blocked_until_ms, n.now + s.block_ms) AS source_until,
       fam.since_ms AS familiar_since
  FROM n
  LEFT JOIN login_failures p ON p.meter = 'pair' AND p.key = $1
  LEFT JOIN login_failures s ON s.meter = 'source' AND s.key = $2
  LEFT JOIN login_familiar fam ON fam.key = $1`;

// A login writes nothing when there is nothing to forgive and the source was familiar less than
// `refresh` ago (the DELETE finds no row; the upsert's WHERE is false).
const FORGIVE = `
WITH n AS (SELECT ${nowFrom(3)} AS now),
forgiven AS (DELETE FROM login_failures WHERE meter = 'pair' AND key = $1 RETURNING 1)
INSERT INTO login_familiar AS f (key, since_ms) SELECT $1, n.now FROM n
ON CONFLICT (key) DO UPDATE SET since_ms = EXCLUDED.since_ms
 WHERE EXCLUDED.since_ms - f.since_ms >= $2::bigint OR EXCLUDED.since_ms < f.since_ms`;

const SWEEP = `
WITH n AS (SELECT ${nowFrom(1)} AS now),
failures AS (
  DELETE FROM login_failures f USING n
   WHERE f.blocked_until_ms <= n.now AND n.now - f.last_ms > $2::bigint
  RETURNING 1
)
DELETE FROM login_familiar f USING n WHERE n.now - f.since_ms > $3::bigint`;

const num = (v: string | number | null | undefined): number | undefined =>
  v === null || v === undefined ? undefined : Number(v);

export class PostgresLoginThrottle implements LockoutTable {
  readonly #db: PostgresConnection;

  constructor(db: PostgresConnection) {
    this.#db = db;
  }

  async read(pair: string, source: string, at?: number): Promise<LockoutReading> {
    const r = await this.#db.withClient((c) =>
      c.query<{
        now: string;
        pair_until: string | null;
        source_until: string | null;
        familiar_since: string | null;
      }>(READ, [pair, source, at ?? null]),
    );
    const row = r.rows[0];
    const pairUntil = num(row?.pair_until);
    const sourceUntil = num(row?.source_until);
    const familiarSince = num(row?.familiar_since);
    return {
      now: Number(row?.now),
      ...(pairUntil === undefined ? {} : { pair: { blockedUntil: pairUntil } }),
      ...(sourceUntil === undefined ? {} : { source: { blockedUntil: sourceUntil } }),
      ...(familiarSince === undefined ? {} : { familiarSince }),
    };
  }

  async fail(pair: string, source: string, policy: SmartLockoutPolicy, at?: number): Promise<void> {
    await this.#db.withClient((c) =>
      c.query(FAIL, [
        pair,
        source,
        policy.pairFreeFailures,
        policy.sourceFreeFailures,
        policy.forgetAfterMs,
        policy.baseBlockMs,
        policy.maxBlockMs,
        at ?? null,
      ]),
    );
  }

  async forgive(pair: string, refreshMs: number, at?: number): Promise<void> {
    await this.#db.withClient((c) => c.query(FORGIVE, [pair, refreshMs, at ?? null]));
  }

  async sweep(policy: SmartLockoutPolicy, at?: number): Promise<void> {
    await this.#db.withClient((c) =>
      c.query(SWEEP, [at ?? null, policy.forgetAfterMs, policy.familiarForMs]),
    );
  }
}
