import type { PoolClient } from 'pg';
import { TrustedMsError } from '../../errors.js';

/**
 * The store's tables, versioned. Each migration runs once, in order, inside the transaction that
 * records its version, at the first use of a store object; concurrent openers queue on an advisory
 * lock, so two processes starting at once never apply one twice. A database whose schema is newer
 * than this code knows is refused (STORE_VERSION_UNSUPPORTED, as for a newer store file), untouched.
 */

/** pg_advisory_xact_lock key of the migrations ('tmsm'). */
const MIGRATION_LOCK = 0x746d736d;

const MIGRATIONS: readonly (readonly string[])[] = [
  // 1: the store document (one row, its JSON as text; NULL until the first write) and the audit
  //    log, one row per record. Records are kept as the exact text that was hashed, never jsonb,
  //    which reorders keys; seq and prev are columns so that the database itself refuses a fork.
  [
    `CREATE TABLE store_document (
       id smallint PRIMARY KEY CHECK (id = 1),
       data text
     )`,
    'INSERT INTO store_document (id, data) VALUES (1, NULL)',
    `CREATE TABLE audit_log (
       seq bigint PRIMARY KEY CHECK (seq >= 0),
       prev text NOT NULL UNIQUE,
       hash text NOT NULL UNIQUE,
       record text NOT NULL
     )`,
  ],
  // 2: security service replicas (issue 17). Logins between their two steps, shared so that a
  //    challenge issued by one replica is answered at another, and taken exactly once (DELETE ...
  //    RETURNING). UNLOGGED: a challenge lives a minute, and a crash of the server losing the
  //    pending ones only makes those users ask for a new challenge.
  [
    `CREATE UNLOGGED TABLE pending_logins (
       id text PRIMARY KEY,
       login text NOT NULL,
       expires_at bigint NOT NULL
     )`,
  ],
  // 3: the smart lock-out's meters, shared by the replicas (login-throttle-table.ts): on each
  //    replica's own file an attacker spreading guesses over N replicas got N budgets. Logged
  //    tables: a crash of the server must not hand an attacker fresh budgets, nor forget the
  //    addresses users are familiar from.
  [
    `CREATE TABLE login_failures (
       meter text NOT NULL CHECK (meter IN ('pair', 'source')),
       key text NOT NULL,
       count integer NOT NULL CHECK (count >= 0),
       last_ms bigint NOT NULL,
       blocked_until_ms bigint NOT NULL,
       block_ms bigint NOT NULL CHECK (block_ms >= 0),
       PRIMARY KEY (meter, key)
     )`,
    `CREATE TABLE login_familiar (
       key text PRIMARY KEY,
       since_ms bigint NOT NULL
     )`,
  ],
];

/** The schema version this code writes. */
export const POSTGRES_SCHEMA_VERSION = MIGRATIONS.length;

/** Brings the database to POSTGRES_SCHEMA_VERSION; `where` names it in errors. */
export async function migrate(client: PoolClient, where: string): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await client.query(
      `CREATE TABLE IF NOT EXISTS trusted_ms_schema (
         only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
         version integer NOT NULL
       )`,
    );
    const found = await client.query<{ version: number }>('SELECT version FROM trusted_ms_schema');
    const version = found.rows[0]?.version ?? 0;
    if (version > POSTGRES_SCHEMA_VERSION) {
      throw new TrustedMsError(
        'STORE_VERSION_UNSUPPORTED',
        `the PostgreSQL store at ${where} has schema version ${version}; this trusted-ms reads up to ${POSTGRES_SCHEMA_VERSION}`,
        {
          actions: [
            'upgrade trusted-ms to a version that wrote this database',
            'the database was left untouched',
          ],
        },
      );
    }
    for (let v = version; v < POSTGRES_SCHEMA_VERSION; v += 1) {
      for (const sql of MIGRATIONS[v] ?? []) await client.query(sql);
    }
    if (version < POSTGRES_SCHEMA_VERSION) {
      await client.query(
        `INSERT INTO trusted_ms_schema (only_row, version) VALUES (true, $1)
         ON CONFLICT (only_row) DO UPDATE SET version = EXCLUDED.version`,
        [POSTGRES_SCHEMA_VERSION],
      );
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
