import type { PendingLoginTable } from '../replica-support.js';
import type { PostgresConnection } from './connection.js';

/** `pending_logins` (migration 2): one row per login between its steps, deleted as it is taken. */
export class PostgresPendingLogins implements PendingLoginTable {
  readonly #db: PostgresConnection;

  constructor(db: PostgresConnection) {
    this.#db = db;
  }

  async add(id: string, login: string, expiresAtSeconds: number): Promise<void> {
    await this.#db.withClient((c) =>
      c.query('INSERT INTO pending_logins (id, login, expires_at) VALUES ($1, $2, $3)', [
        id,
        login,
        expiresAtSeconds,
      ]),
    );
  }

  async take(id: string): Promise<string | undefined> {
    const r = await this.#db.withClient((c) =>
      c.query<{ login: string }>('DELETE FROM pending_logins WHERE id = $1 RETURNING login', [id]),
    );
    return r.rows[0]?.login;
  }

  async sweep(nowSeconds: number): Promise<void> {
    await this.#db.withClient((c) =>
      c.query('DELETE FROM pending_logins WHERE expires_at <= $1', [nowSeconds]),
    );
  }
}
