import type { PoolClient } from 'pg';
import { TrustedMsError } from '../../errors.js';
import { type StoreData, validateStoreData } from '../schema.js';
import type { PostgresConnection } from './connection.js';

/**
 * The store document (users, roles, services, revocations) as one row. Why one row and not a table
 * per collection: the callers' contract is a read-modify-write of the whole document (`update(fn)`
 * sees and may change any collection), the documents are small (a lab has tens of users), and one
 * row locked with SELECT ... FOR UPDATE serialises every writer in every process exactly as the
 * file lock does for store.json. Per-collection tables would pay off with many replicas writing
 * different collections at once; that is a later slice (issue 17).
 */
export class PostgresDocument {
  readonly #db: PostgresConnection;
  readonly #initial: () => StoreData;
  /** told of each update that wrote, inside its transaction (the replicas' change feed) */
  readonly #announce: (client: PoolClient) => Promise<void>;

  constructor(
    db: PostgresConnection,
    initial: () => StoreData,
    announce: (client: PoolClient) => Promise<void> = async () => undefined,
  ) {
    this.#db = db;
    this.#initial = initial;
    this.#announce = announce;
  }

  async read(): Promise<StoreData> {
    return this.#db.withClient(async (client) => {
      const text = await this.#select(client, '');
      return text === null ? this.#initial() : this.#parse(text);
    });
  }

  /**
   * In one transaction: lock the row, apply `fn` to its data, write it back if anything changed (or
   * it was never written), commit. A writer in another process waits on the row lock, so no update
   * is lost; when `fn` throws, the transaction is rolled back and nothing changes.
   */
  update<R>(fn: (data: StoreData) => R | Promise<R>): Promise<R> {
    return this.#db.transaction(async (client) => {
      const text = await this.#select(client, ' FOR UPDATE');
      const data = text === null ? this.#initial() : this.#parse(text);
      const before = text === null ? undefined : JSON.stringify(data);
      const result = await fn(data);
      const after = JSON.stringify(data);
      if (before === undefined || after !== before) {
        await client.query('UPDATE store_document SET data = $1 WHERE id = 1', [after]);
        await this.#announce(client);
      }
      return result;
    });
  }

  async #select(client: PoolClient, lock: string): Promise<string | null> {
    const r = await client.query<{ data: string | null }>(
      `SELECT data FROM store_document WHERE id = 1${lock}`,
    );
    const row = r.rows[0];
    if (row === undefined) {
      throw new TrustedMsError(
        'STORE_CORRUPT',
        `the PostgreSQL store at ${this.#db.where} has no store document row`,
        {
          actions: ['restore the database from a backup', 'the database was left untouched'],
        },
      );
    }
    return row.data;
  }

  #parse(text: string): StoreData {
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (err) {
      throw new TrustedMsError('STORE_CORRUPT', `the store document at ${this.#db.where} is not valid JSON`, {
        cause: err,
        actions: ['restore the database from a backup', 'the database was left untouched'],
      });
    }
    return validateStoreData(raw, `the store document at ${this.#db.where}`);
  }
}
