import { TrustedMsError } from '../errors.js';
import { monotonicNow } from './rate-limit.js';

/**
 * Smart lock-out (Microsoft Entra's idea, OWASP ASVS 4.0 2.2.1): failed logins slow down and stop
 * the *source* they come from, never the account. Two meters, both with exponential back-off:
 *
 * - per (user, source): after `pairFreeFailures` failures, each further one blocks that pair for
 *   `baseBlockMs` x 2^(failures - pairFreeFailures), at most `maxBlockMs`: refused ACCOUNT_LOCKED;
 * - per source, whatever the user: the same after `sourceFreeFailures` failures: refused
 *   RATE_LIMITED. A source where the user has logged in before (familiar) is not held back by it.
 *
 * So an attacker who sends wrong passwords for alice from its own addresses locks out only those
 * addresses, while alice from an address with no failures, or one she logged in from before, with
 * her password and her key, still gets in. Keyed by the name as typed, never by whether the user
 * exists: an unknown name gets exactly the answers a real one does (no enumeration).
 *
 * Durations run on a monotonic clock (see monotonicNow); the state is saved as wall-clock times
 * (`snapshot`/`restore`) so that it survives a restart of the security service.
 */
export interface SmartLockoutPolicy {
  pairFreeFailures: number;
  sourceFreeFailures: number;
  baseBlockMs: number;
  maxBlockMs: number;
  /** failures older than this with no newer one are forgotten */
  forgetAfterMs: number;
  /** how long a source stays familiar for a user after a login from it */
  familiarForMs: number;
  /** most records kept per meter; the idlest is dropped first (which can only forgive) */
  maxRecords: number;
}

/** The numbers of limits:on (docs/accounts.md). */
export const SMART_LOCKOUT_POLICY: Readonly<SmartLockoutPolicy> = Object.freeze({
  pairFreeFailures: 5,
  sourceFreeFailures: 20,
  baseBlockMs: 1000,
  maxBlockMs: 15 * 60_000,
  forgetAfterMs: 60 * 60_000,
  familiarForMs: 30 * 24 * 3600_000,
  maxRecords: 10_000,
});

interface Failures {
  count: number;
  /** last failure, on the lock-out's clock */
  last: number;
  /** refused until then, on the lock-out's clock (0: not blocked) */
  blockedUntil: number;
  /** the length of the current block: a clock stepped back cannot make it longer */
  blockMs: number;
}

/** The state as saved: wall-clock milliseconds, so a restarted service reads it back. */
export interface SmartLockoutState {
  pairs: Record<string, Failures>;
  sources: Record<string, Failures>;
  familiar: Record<string, number>;
}

/** Where the state is kept between restarts (the lab store's login-throttle file). */
export interface LockoutPersistence {
  load(): Promise<SmartLockoutState | undefined>;
  save(state: SmartLockoutState): Promise<void>;
}

/**
 * What the security service asks of a lock-out, whichever keeps the meters: SmartLockout (one
 * security service, in memory and saved to the home's file) or SharedLockout (replicas on
 * PostgreSQL, every meter in the store). `failed` and `succeeded` resolve once the change counts
 * for the next `check`, at any replica.
 */
export interface LoginLockout {
  check(user: string, source: string): Promise<void>;
  failed(user: string, source: string): Promise<void>;
  succeeded(user: string, source: string): Promise<void>;
  close(): Promise<void>;
}

/** The refusals of a blocked meter: the same words for every name, existing or not. */
export function accountLocked(): TrustedMsError {
  return new TrustedMsError('ACCOUNT_LOCKED', 'too many failed logins: try again later');
}
export function sourceLocked(): TrustedMsError {
  return new TrustedMsError('RATE_LIMITED', 'too many failed logins from this address: try again later');
}

/** How long a familiar source stays unrefreshed: a login writes nothing more often than this. */
export const FAMILIAR_REFRESH_MS = 24 * 3600_000;

export const pairKey = (user: string, source: string): string => `${source} ${user}`;

export class SmartLockout implements LoginLockout {
  readonly #policy: SmartLockoutPolicy;
  readonly #now: () => number;
  readonly #wall: () => number;
  readonly #persistence: LockoutPersistence | undefined;
  readonly #saveDelayMs: number;
  readonly #pairs = new Map<string, Failures>();
  readonly #sources = new Map<string, Failures>();
  readonly #familiar = new Map<string, number>();
  #loaded: Promise<void> | undefined;
  #saveTimer: NodeJS.Timeout | undefined;
  #saving: Promise<void> = Promise.resolve();
  #dirty = false;

  constructor(
    opts: {
      policy?: Partial<SmartLockoutPolicy>;
      /** the durations' clock (monotonic by default) */
      now?: () => number;
      /** the wall clock the saved state is written in */
      wall?: () => number;
      persistence?: LockoutPersistence;
      /** changes are written at most this often (ms); a failed login does not wait for the disk */
      saveDelayMs?: number;
    } = {},
  ) {
    this.#policy = { ...SMART_LOCKOUT_POLICY, ...opts.policy };
    this.#now = opts.now ?? monotonicNow;
    this.#wall = opts.wall ?? Date.now;
    this.#persistence = opts.persistence;
    this.#saveDelayMs = opts.saveDelayMs ?? 1000;
  }

  /**
   * Refuses a login step from `source` for `user` while one of its meters is blocked: the same
   * refusal for every name, existing or not. Reads the saved state first, once.
   */
  async check(user: string, source: string): Promise<void> {
    await this.#load();
    const t = this.#now();
    if (blocked(this.#pairs.get(pairKey(user, source)), t)) throw accountLocked();
    if (blocked(this.#sources.get(source), t) && !this.#isFamiliar(user, source, t)) throw sourceLocked();
  }

  /**
   * A wrong password, or a signature by the wrong key, for `user` from `source`. Counted in memory
   * before it returns (the disk follows within saveDelayMs).
   */
  async failed(user: string, source: string): Promise<void> {
    const t = this.#now();
    this.#count(this.#pairs, pairKey(user, source), this.#policy.pairFreeFailures, t);
    this.#count(this.#sources, source, this.#policy.sourceFreeFailures, t);
    this.#changed();
  }

  /**
   * A whole login (password and key) of `user` from `source`: that pair's failures are forgiven
   * and the source becomes familiar. Writes nothing when nothing changes that matters (a familiar
   * source is refreshed at most once a day), so a login costs no store write.
   */
  async succeeded(user: string, source: string): Promise<void> {
    const t = this.#now();
    const key = pairKey(user, source);
    const hadFailures = this.#pairs.delete(key);
    const since = this.#familiar.get(key);
    if (!hadFailures && since !== undefined && t - since < FAMILIAR_REFRESH_MS && t >= since) return;
    this.#familiar.delete(key);
    bounded(this.#familiar, this.#policy.maxRecords).set(key, t);
    this.#changed();
  }

  /** Writes what is not written yet and stops the timer (the service's shutdown). */
  async close(): Promise<void> {
    if (this.#saveTimer !== undefined) clearTimeout(this.#saveTimer);
    this.#saveTimer = undefined;
    await this.#save();
  }

  /** The state in wall-clock time, as saved. */
  snapshot(): SmartLockoutState {
    const t = this.#now();
    const wall = this.#wall();
    const toWall = (x: number) => (x === 0 ? 0 : wall + (x - t));
    const failures = (m: Map<string, Failures>) =>
      Object.fromEntries(
        [...m].map(([k, f]) => [k, { ...f, last: toWall(f.last), blockedUntil: toWall(f.blockedUntil) }]),
      );
    return {
      pairs: failures(this.#pairs),
      sources: failures(this.#sources),
      familiar: Object.fromEntries([...this.#familiar].map(([k, at]) => [k, toWall(at)])),
    };
  }

  /**
   * Takes a saved state in: times back on this clock, and no block longer from now than its own
   * length (the wall clock may have been stepped back meanwhile).
   */
  restore(s: SmartLockoutState): void {
    const t = this.#now();
    const wall = this.#wall();
    const fromWall = (x: number) => t + Math.min(0, x - wall);
    const take = (from: Record<string, Failures>, to: Map<string, Failures>) => {
      for (const [k, f] of Object.entries(from)) {
        const blockedUntil = f.blockedUntil === 0 ? 0 : t + Math.min(f.blockMs, f.blockedUntil - wall);
        bounded(to, this.#policy.maxRecords).set(k, { ...f, last: fromWall(f.last), blockedUntil });
      }
    };
    take(s.pairs, this.#pairs);
    take(s.sources, this.#sources);
    for (const [k, at] of Object.entries(s.familiar))
      bounded(this.#familiar, this.#policy.maxRecords).set(k, fromWall(at));
  }

  #isFamiliar(user: string, source: string, t: number): boolean {
    const since = this.#familiar.get(pairKey(user, source));
    return since !== undefined && t - since <= this.#policy.familiarForMs;
  }

  #count(meter: Map<string, Failures>, key: string, free: number, t: number): void {
    let f = meter.get(key);
    // A clock that went back: the failure counts as now, never as an hour in the future.
    if (f !== undefined && f.last > t) f.last = t;
    if (f === undefined || t - f.last > this.#policy.forgetAfterMs) {
      f = { count: 0, last: t, blockedUntil: 0, blockMs: 0 };
    }
    meter.delete(key);
    bounded(meter, this.#policy.maxRecords).set(key, f);
    f.count += 1;
    f.last = t;
    if (f.count >= free) {
      f.blockMs = Math.min(this.#policy.maxBlockMs, this.#policy.baseBlockMs * 2 ** (f.count - free));
      f.blockedUntil = t + f.blockMs;
    }
  }

  #load(): Promise<void> {
    this.#loaded ??= (async () => {
      const saved = await this.#persistence?.load().catch(() => undefined);
      if (saved !== undefined) this.restore(saved);
    })();
    return this.#loaded;
  }

  #changed(): void {
    if (this.#persistence === undefined) return;
    this.#dirty = true;
    if (this.#saveTimer !== undefined) return;
    this.#saveTimer = setTimeout(() => {
      this.#saveTimer = undefined;
      void this.#save();
    }, this.#saveDelayMs);
    this.#saveTimer.unref();
  }

  /** One write at a time; a write that fails is tried again with the next change (memory stays right). */
  #save(): Promise<void> {
    this.#saving = this.#saving.then(async () => {
      if (!this.#dirty || this.#persistence === undefined) return;
      this.#dirty = false;
      await this.#persistence.save(this.#forgetOld(this.snapshot())).catch(() => {
        this.#dirty = true;
      });
    });
    return this.#saving;
  }

  /** Drops what no longer refuses anything from what is saved (memory keeps it until evicted). */
  #forgetOld(s: SmartLockoutState): SmartLockoutState {
    const wall = this.#wall();
    const live = (f: Failures) => f.blockedUntil > wall || wall - f.last <= this.#policy.forgetAfterMs;
    const keep = (r: Record<string, Failures>) =>
      Object.fromEntries(Object.entries(r).filter(([, f]) => live(f)));
    return {
      pairs: keep(s.pairs),
      sources: keep(s.sources),
      familiar: Object.fromEntries(
        Object.entries(s.familiar).filter(([, at]) => wall - at <= this.#policy.familiarForMs),
      ),
    };
  }
}

function blocked(f: Failures | undefined, t: number): boolean {
  if (f === undefined) return false;
  // The clock went back: a block ends at most its own length from now, not its length plus the step.
  if (f.blockedUntil - t > f.blockMs) f.blockedUntil = t + f.blockMs;
  return f.blockedUntil > t;
}

/** `m` with room for one more key: the least recently used goes first. */
function bounded<V>(m: Map<string, V>, max: number): Map<string, V> {
  while (m.size >= max) m.delete(m.keys().next().value as string);
  return m;
}
