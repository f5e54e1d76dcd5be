import { randomBytes } from 'node:crypto';
import type { PoolClient } from 'pg';
import type { ChangeFeed } from '../replica-support.js';
import type { PostgresConnection } from './connection.js';

/** The NOTIFY channel every committed document update is announced on. */
const CHANNEL = 'trusted_ms_changes';
/** After a lost LISTEN connection, how long before trying again. */
const RELISTEN_MS = 500;

/**
 * Word of document updates between store objects, over LISTEN/NOTIFY: `announce` runs inside the
 * update's transaction, so the notification is delivered at its commit and never for a rolled-back
 * one. The payload is the announcing object's id, so an object does not hear its own updates.
 */
export class PostgresChangeChannel implements ChangeFeed {
  readonly #db: PostgresConnection;
  readonly #origin = randomBytes(8).toString('hex');

  constructor(db: PostgresConnection) {
    this.#db = db;
  }

  async announce(client: PoolClient): Promise<void> {
    await client.query('SELECT pg_notify($1, $2)', [CHANNEL, this.#origin]);
  }

  async follow(onChange: () => void, log?: (line: string) => void): Promise<() => Promise<void>> {
    let stopped = false;
    let stopListening: (() => Promise<void>) | undefined;
    let retry: NodeJS.Timeout | undefined;
    const open = async (): Promise<void> => {
      stopListening = await this.#db.listen(
        CHANNEL,
        (origin) => {
          if (origin !== this.#origin) onChange();
        },
        (err) => {
          if (stopped) return;
          log?.(`store changes: ${err.message}; listening again in ${RELISTEN_MS} ms`);
          reopen();
        },
      );
    };
    const reopen = (): void => {
      retry = setTimeout(() => {
        if (stopped) return;
        open()
          // whatever was committed while nobody listened
          .then(onChange)
          .catch((err: Error) => {
            log?.(`store changes: ${err.message}`);
            reopen();
          });
      }, RELISTEN_MS);
    };
    await open();
    return async () => {
      stopped = true;
      clearTimeout(retry);
      await stopListening?.();
    };
  }
}
