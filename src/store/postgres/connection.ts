import { readFile } from 'node:fs/promises';
import type { Pool, PoolClient, PoolConfig } from 'pg';
import { TrustedMsError } from '../../errors.js';
import { isDatabaseError, redactUrl, storeErrorOf } from './errors.js';
import { migrate } from './migrations.js';

export interface PostgresTarget {
  /** postgres://user[:password]@host:port/database */
  url: string;
  /** Read at each new connection when the URL carries no password (the lab's own server: 0600). */
  passwordFile?: string;
}

/** How long a connection may take before the store counts as unavailable. */
const CONNECT_TIMEOUT_MS = 5_000;

function poolConfig(target: PostgresTarget): PoolConfig {
  let u: URL;
  try {
    u = new URL(target.url);
  } catch {
    throw new TrustedMsError('USAGE', `the store URL is not a URL: ${redactUrl(target.url)}`, {
      actions: ['give one like postgres://user:password@127.0.0.1:5432/database'],
    });
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') {
    throw new TrustedMsError('USAGE', `the store URL must start with postgres://, not ${u.protocol}//`);
  }
  const { passwordFile } = target;
  return {
    host: u.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1',
    port: u.port === '' ? 5432 : Number(u.port),
    user: decodeURIComponent(u.username),
    database: decodeURIComponent(u.pathname.replace(/^\//, '')) || 'postgres',
    ...(u.password !== ''
      ? { password: decodeURIComponent(u.password) }
      : passwordFile !== undefined
        ? { password: async () => (await readFile(passwordFile, 'utf8')).trim() }
        : {}),
    // A handful is enough: writes are serialised by the database anyway.
    max: 5,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    idleTimeoutMillis: 10_000,
    // CLI commands open a store and never close it: an idle pool must not keep them alive.
    allowExitOnIdle: true,
  };
}

/**
 * A lazily opened pool to the store's database. The first use connects and runs the migrations;
 * a failure there is reported (with our code) and tried again at the next use, so a store object
 * outlives a server that was down for a while.
 */
export class PostgresConnection {
  readonly url: string;
  readonly where: string;
  readonly #target: PostgresTarget;
  #ready: Promise<Pool> | undefined;

  constructor(target: PostgresTarget) {
    this.#target = target;
    this.url = target.url;
    this.where = redactUrl(target.url);
  }

  /** Runs `fn` on one connection; a failure of the database becomes our code. */
  async withClient<R>(fn: (client: PoolClient) => Promise<R>): Promise<R> {
    const pool = await this.#pool();
    let client: PoolClient;
    try {
      client = await pool.connect();
    } catch (err) {
      throw storeErrorOf(this.url, err);
    }
    let broken = false;
    try {
      return await fn(client);
    } catch (err) {
      broken = isDatabaseError(err);
      throw broken ? storeErrorOf(this.url, err) : err;
    } finally {
      // A connection that failed is not handed to the next caller.
      client.release(broken);
    }
  }

  /** `fn` inside BEGIN ... COMMIT; rolled back when it throws. */
  transaction<R>(fn: (client: PoolClient) => Promise<R>): Promise<R> {
    return this.withClient(async (client) => {
      await client.query('BEGIN');
      try {
        const result = await fn(client);
        await client.query('COMMIT');
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
    });
  }

  /**
   * A connection of its own that LISTENs on `channel` (a pooled one would be handed to others):
   * `onNotify` gets each payload. Opened after the pool, so the schema is migrated first.
   */
  async listen(
    channel: string,
    onNotify: (payload: string) => void,
    onEnd: (err: Error) => void,
  ): Promise<() => Promise<void>> {
    await this.#pool();
    const { default: pg } = await import('pg');
    const client = new pg.Client(poolConfig(this.#target));
    let closing = false;
    const ended = (err: Error): void => {
      if (closing) return;
      closing = true;
      client.end().catch(() => undefined);
      onEnd(err);
    };
    client.on('error', ended);
    client.on('end', () => ended(new Error('the connection ended')));
    client.on('notification', (n) => {
      if (n.channel === channel) onNotify(n.payload ?? '');
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${channel}`);
    } catch (err) {
      closing = true;
      await client.end().catch(() => undefined);
      throw storeErrorOf(this.url, err);
    }
    return async () => {
      closing = true;
      await client.end().catch(() => undefined);
    };
  }

  async close(): Promise<void> {
    const ready = this.#ready;
    this.#ready = undefined;
    if (ready === undefined) return;
    const pool = await ready.catch(() => undefined);
    await pool?.end().catch(() => undefined);
  }

  #pool(): Promise<Pool> {
    if (this.#ready === undefined) {
      const opening = this.#open();
      this.#ready = opening;
      opening.catch(() => {
        if (this.#ready === opening) this.#ready = undefined;
      });
    }
    return this.#ready;
  }

  async #open(): Promise<Pool> {
    const config = poolConfig(this.#target);
    // Loaded here: CLI commands on the file store never pay for the driver.
    const { default: pg } = await import('pg');
    const pool = new pg.Pool(config);
    // An idle connection the server drops (a restart) must not crash the process: the next
    // query gets a fresh connection, or STORE_UNAVAILABLE.
    pool.on('error', () => undefined);
    try {
      const client = await pool.connect();
      try {
        await migrate(client, this.where);
      } finally {
        client.release();
      }
      return pool;
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw storeErrorOf(this.url, err);
    }
  }
}
