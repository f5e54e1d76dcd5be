import {
  accountLocked,
  FAMILIAR_REFRESH_MS,
  type LoginLockout,
  pairKey,
  SMART_LOCKOUT_POLICY,
  type SmartLockoutPolicy,
  sourceLocked,
} from './smart-lockout.js';

/** A meter's block as the table reads it: refused until `blockedUntil` (0: not blocked). */
export interface MeterBlock {
  blockedUntil: number;
}

/** What `read` finds for one login step, on the table's clock (ms). */
export interface LockoutReading {
  now: number;
  pair?: MeterBlock;
  source?: MeterBlock;
  /** when the pair last logged in whole (the source is familiar for the user since then) */
  familiarSince?: number;
}

/**
 * The smart lock-out's meters in a store that every security service replica writes (PostgreSQL's
 * `login_failures` and `login_familiar`, src/store/postgres/login-throttle-table.ts). Each change
 * is one statement that computes the new count and block from the row it finds, under the row's
 * lock: two replicas counting a failure at once both count, and neither reads what the other is
 * about to overwrite. `at` is the caller's clock (ms) when it has one to give (tests); without it
 * the store's own clock is used, one clock for every replica.
 */
export interface LockoutTable {
  /** The pair's and the source's blocks, and the pair's familiarity. A block read is never longer from now than its own length. */
  read(pair: string, source: string, at?: number): Promise<LockoutReading>;
  /** One failure on both meters, with the policy's free failures, back-off and forgetting. */
  fail(pair: string, source: string, policy: SmartLockoutPolicy, at?: number): Promise<void>;
  /** A whole login: the pair's failures are forgiven, the source familiar (refreshed at most every `refreshMs`). */
  forgive(pair: string, refreshMs: number, at?: number): Promise<void>;
  /** Forgets what no longer refuses anything. */
  sweep(policy: SmartLockoutPolicy, at?: number): Promise<void>;
}

/** How often a replica sweeps the table (after a failure, never waited for). */
const SWEEP_EVERY_MS = 60_000;

/**
 * Smart lock-out for security service replicas on a shared store (issue 17): the same meters,
 * numbers and refusals as SmartLockout (docs/accounts.md), but every meter lives in the store, so
 * an attacker whose tries the gateway spreads over N replicas gets one budget, not N. Nothing is
 * kept in memory: a check is one read, a failure one upsert, a login at most one upsert. A store
 * that does not answer fails the login step with the store's code (STORE_UNAVAILABLE): a guess
 * that cannot be counted is not checked.
 */
export class SharedLockout implements LoginLockout {
  readonly #table: LockoutTable;
  readonly #policy: SmartLockoutPolicy;
  readonly #now: (() => number) | undefined;
  #lastSweep = 0;

  constructor(opts: { table: LockoutTable; policy?: Partial<SmartLockoutPolicy>; now?: () => number }) {
    this.#table = opts.table;
    this.#policy = { ...SMART_LOCKOUT_POLICY, ...opts.policy };
    this.#now = opts.now;
  }

  async check(user: string, source: string): Promise<void> {
    const r = await this.#table.read(pairKey(user, source), source, this.#now?.());
    if ((r.pair?.blockedUntil ?? 0) > r.now) throw accountLocked();
    const familiar = r.familiarSince !== undefined && r.now - r.familiarSince <= this.#policy.familiarForMs;
    if ((r.source?.blockedUntil ?? 0) > r.now && !familiar) throw sourceLocked();
  }

  async failed(user: string, source: string): Promise<void> {
    await this.#table.fail(pairKey(user, source), source, this.#policy, this.#now?.());
    const t = performance.now();
    if (t - this.#lastSweep >= SWEEP_EVERY_MS) {
      this.#lastSweep = t;
      void this.#table.sweep(this.#policy, this.#now?.()).catch(() => undefined);
    }
  }

  async succeeded(user: string, source: string): Promise<void> {
    await this.#table.forgive(pairKey(user, source), FAMILIAR_REFRESH_MS, this.#now?.());
  }

  async close(): Promise<void> {}
}
