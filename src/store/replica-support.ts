import type { LockoutTable } from '../defences/shared-lockout.js';

/**
 * What security service replicas share beyond the document and the audit log (issue 17): logins
 * between their two steps, word of every change another replica committed, and the lock-out's meters. Only a store that
 * several processes share as a server offers it (PostgreSQL); on the lab home's files there is one
 * security service and it keeps both in memory.
 */
export interface ReplicaSupport {
  readonly pendingLogins: PendingLoginTable;
  readonly changes: ChangeFeed;
  /** the smart lock-out's meters, so that N replicas give an attacker one budget, not N */
  readonly lockout: LockoutTable;
}

/**
 * Logins between their two steps, as opaque text (the security service's own encoding), by id.
 * `take` removes what it returns in the same statement, so among any number of replicas one
 * `take` of an id gets it and every other gets nothing.
 */
export interface PendingLoginTable {
  add(id: string, login: string, expiresAtSeconds: number): Promise<void>;
  take(id: string): Promise<string | undefined>;
  /** Forgets the logins that expired before `nowSeconds`. */
  sweep(nowSeconds: number): Promise<void>;
}

/** Word of committed `update`s made through other store objects (other replicas, the CLI). */
export interface ChangeFeed {
  /**
   * Calls `onChange` after each such update, and once after a lost connection is back (changes may
   * have been missed meanwhile); resolves once listening. The answer stops it.
   */
  follow(onChange: () => void, log?: (line: string) => void): Promise<() => Promise<void>>;
}
