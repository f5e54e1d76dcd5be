import type { LabStoreState } from '../../kernel/lab-state.js';
import { serverAccount, startCluster } from '../../store/postgres/local-server.js';
import type { RestartBackoff } from './backoff.js';
import type { RestartRecord } from './restarts.js';

/** The name the lab's own PostgreSQL server has in the watchman's record (`lab status`). */
export const POSTGRES_WATCH_NAME = 'postgres';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: a process of another account has the PID; it is alive (and may be the server).
    return (err as { code?: string }).code === 'EPERM';
  }
}

/**
 * The watchman's eye on the lab's own PostgreSQL server (`lab up --store postgres` without
 * --store-url, process runtime): while it is down every login and admin write of every replica
 * fails STORE_UNAVAILABLE, so it is brought back like a part, with the same back-off and giving
 * up, and started exactly as `lab up` started it (same cluster, same port: the replicas' URL).
 * A server given by --store-url is someone else's to run and is never touched.
 */
export class LabPostgresWatch {
  readonly #backoff: RestartBackoff;
  readonly #log: (line: string) => void;
  readonly #start: (clusterDir: string, port: number) => Promise<number>;
  #seen: { pid: number; due: number } | undefined;

  constructor(
    backoff: RestartBackoff,
    log: (line: string) => void,
    start: (clusterDir: string, port: number) => Promise<number> = (dir, port) =>
      startCluster(dir, serverAccount(), port),
  ) {
    this.#backoff = backoff;
    this.#log = log;
    this.#start = start;
  }

  /** One look; the new server's PID when it was started again now (for the lab's state file). */
  async round(
    store: LabStoreState | undefined,
    record: RestartRecord,
    now: number,
  ): Promise<number | undefined> {
    if (store?.kind !== 'postgres' || store.server === undefined) return undefined;
    if (record[POSTGRES_WATCH_NAME]?.gaveUp) return undefined;
    const { pid, clusterDir } = store.server;
    if (alive(pid)) {
      this.#seen = undefined;
      return undefined;
    }
    if (this.#seen?.pid !== pid) {
      this.#schedule(pid, now, record, 'died');
      return undefined;
    }
    if (now < this.#seen.due) return undefined;
    this.#backoff.started(POSTGRES_WATCH_NAME, now);
    let started: number;
    try {
      started = await this.#start(clusterDir, Number(new URL(store.where).port));
    } catch (err) {
      this.#log(`watchman: postgres could not be restarted: ${(err as Error).message}`);
      this.#schedule(pid, now, record, 'failed to restart');
      return undefined;
    }
    this.#seen = undefined;
    const previous = record[POSTGRES_WATCH_NAME]?.restarts ?? 0;
    record[POSTGRES_WATCH_NAME] = { restarts: previous + 1, lastRestartAt: new Date().toISOString() };
    this.#log(`watchman: postgres restarted (pid ${started}, restart ${previous + 1})`);
    return started;
  }

  #schedule(pid: number, now: number, record: RestartRecord, what: string): void {
    const delay = this.#backoff.delayAfterDeath(POSTGRES_WATCH_NAME, now);
    if (delay === undefined) {
      record[POSTGRES_WATCH_NAME] = { ...(record[POSTGRES_WATCH_NAME] ?? { restarts: 0 }), gaveUp: true };
      this.#seen = undefined;
      this.#log(`watchman: postgres ${what} (pid ${pid}); gave up after too many restarts in a row`);
      return;
    }
    this.#seen = { pid, due: now + delay };
    this.#log(`watchman: postgres ${what} (pid ${pid}); restarting in ${delay} ms`);
  }
}
