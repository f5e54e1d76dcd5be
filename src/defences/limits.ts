import { setTimeout as sleep } from 'node:timers/promises';
import { TrustedMsError } from '../errors.js';
import type { Defences } from './presets.js';
import { KeyedConcurrency, RateLimiter } from './rate-limit.js';
import { type LockoutTable, SharedLockout } from './shared-lockout.js';
import { type LockoutPersistence, type LoginLockout, SmartLockout } from './smart-lockout.js';

/**
 * The `limits` defence at the gateway: what a client address and a user may send, and how logins
 * are metered per address. `off` admits everything; `on` is the trusted preset's policy. The
 * security service's own share (per-address login limit, lock-out) follows the same choice there.
 */
export interface GatewayLimits {
  /** before the ticket is even read: per client address; throws RATE_LIMITED */
  admitClient(ip: string): void;
  /**
   * after the request is authenticated: per user; resolves when the user's turn comes with how long
   * it waited (ms, 0 when it did not), or throws
   */
  admitUser(user: string): Promise<number>;
  /** a login step: its slot, or RATE_LIMITED */
  loginSlot(ip: string): Promise<LoginSlot>;
  /** before a login step is relayed: refuses an address whose failures or rate are spent */
  admitLogin(ip: string): Promise<void>;
  /** after a login step was refused by the security service (a 4xx) */
  loginFailed(ip: string): void;
}

/** The gateway's numbers (`GatewayPartConfig.rateLimit`; chosen and measured in lab/up.ts). */
export interface GatewayLimitConfig {
  perUser: number;
  userBurst: number;
  /** how long a user over its rate waits for its turn before a 429 */
  userMaxWaitMs: number;
  perClient: number;
  burst: number;
  loginsPerClient: number;
  loginFailuresPerClient: number;
  loginFailureBurst: number;
  /** login steps in flight per client address; more wait (up to 256), then 429 */
  loginsInFlightPerClient: number;
  /**
   * how long a client whose failed logins are spent waits for its 429 (default 1 s), in its login
   * slot. Refused at once, a flooding client asks again at once and keeps the gateway busy
   * answering (measured: ~550 refusals/s from 32 connections slowed others' logins ~5x); made to
   * wait, it gets two refusals a second.
   */
  refusalDelayMs?: number;
}

/** What one client address may hold of a server's sockets (services/connection-guard.ts). */
export interface ConnectionLimits {
  /** open sockets per client address; one more is closed as soon as it is accepted */
  perSource: number;
  /** a socket that has sent no byte this long after it was accepted is closed */
  firstByteMs: number;
}

/**
 * `on`: an address may hold 512 of the gateway's and the security service's sockets (of 4,096,
 * SERVER_LIMITS.maxConnections), and a socket that says nothing for 5 s is closed. 512 is over
 * three times what `lab load --clients 150` opens from one address (one connection per virtual
 * user) and leaves seven eighths of the sockets to everyone else. `off`: only the server's cap
 * (dos.connection-exhaustion shows what that lets one address do).
 */
export function connectionLimitsFor(choice: Defences['limits']): ConnectionLimits | undefined {
  return choice === 'on' ? CONNECTION_LIMITS : undefined;
}

export const CONNECTION_LIMITS: ConnectionLimits = Object.freeze({ perSource: 512, firstByteMs: 5_000 });

/** A login step's turn at the security service. */
export interface LoginSlot {
  release(): void;
  /**
   * How long it waited (ms; 0 when a slot was free) for other steps of the same address to end:
   * held back to the address's share, which the gateway says on the answer (RATE_WAIT_HEADER) as
   * it does for a user held to its rate.
   */
  waitedMs: number;
}

export function rateLimited(): TrustedMsError {
  return new TrustedMsError('RATE_LIMITED', 'too many requests, try again shortly');
}

const FREE_SLOT: LoginSlot = Object.freeze({ release: () => undefined, waitedMs: 0 });

/** `limits:off`: nobody is metered. */
export const NO_LIMITS: GatewayLimits = Object.freeze({
  admitClient: () => undefined,
  admitUser: async () => 0,
  loginSlot: async () => FREE_SLOT,
  admitLogin: async () => undefined,
  loginFailed: () => undefined,
});

/** The meters of `limits:on`; a login meter left out does not limit (tests give only what they check). */
export interface LimitMeters {
  perUser: RateLimiter;
  perClient: RateLimiter;
  /** how long a user over its rate may wait for its turn (default 0: refused at once) */
  perUserMaxWaitMs?: number;
  logins?: RateLimiter;
  loginFailures?: RateLimiter;
  loginsInFlight?: KeyedConcurrency;
  refusalDelayMs?: number;
}

/**
 * `limits:on`. Per user: a user over its rate waits its turn (up to perUserMaxWaitMs) rather than
 * spinning on cheap 429s that still cost the gateway (dos.request-flood). Logins: failed steps are
 * counted after the answer and checked before the relay, so a flood of wrong passwords gets a
 * handful of hashes and then cheap 429s, while successful logins (many users behind one address)
 * are never counted (dos.login-flood).
 */
export class AddressAndUserLimits implements GatewayLimits {
  readonly #m: LimitMeters;

  constructor(meters: LimitMeters) {
    this.#m = meters;
  }

  static fromConfig(c: GatewayLimitConfig, now?: () => number): AddressAndUserLimits {
    return new AddressAndUserLimits(metersFor(c, now));
  }

  admitClient(ip: string): void {
    if (!this.#m.perClient.take(ip)) throw rateLimited();
  }

  async admitUser(user: string): Promise<number> {
    const waitMs = this.#m.perUser.reserve(user, this.#m.perUserMaxWaitMs ?? 0);
    if (waitMs === undefined) throw rateLimited();
    if (waitMs > 0) await sleep(waitMs);
    return waitMs;
  }

  async loginSlot(ip: string): Promise<LoginSlot> {
    const gate = this.#m.loginsInFlight;
    if (gate === undefined) return FREE_SLOT;
    const queued = gate.busy(ip);
    const t0 = performance.now();
    const release = await gate.acquire(ip);
    if (release === undefined) throw rateLimited();
    return { release, waitedMs: queued ? Math.max(1, Math.ceil(performance.now() - t0)) : 0 };
  }

  async admitLogin(ip: string): Promise<void> {
    if (this.#m.loginFailures !== undefined && !this.#m.loginFailures.peek(ip)) {
      await sleep(this.#m.refusalDelayMs ?? 1000);
      throw rateLimited();
    }
    if (this.#m.logins !== undefined && !this.#m.logins.take(ip)) throw rateLimited();
  }

  loginFailed(ip: string): void {
    this.#m.loginFailures?.take(ip);
  }
}

/** The meters of `limits:on` from the gateway's numbers. */
export function metersFor(c: GatewayLimitConfig, now?: () => number): LimitMeters {
  return {
    perUser: new RateLimiter(c.perUser, c.userBurst, now),
    perClient: new RateLimiter(c.perClient, c.burst, now),
    perUserMaxWaitMs: c.userMaxWaitMs,
    logins: new RateLimiter(c.loginsPerClient, c.loginsPerClient * 2, now),
    loginFailures: new RateLimiter(c.loginFailuresPerClient, c.loginFailureBurst, now),
    loginsInFlight: new KeyedConcurrency(c.loginsInFlightPerClient, 256),
    ...(c.refusalDelayMs === undefined ? {} : { refusalDelayMs: c.refusalDelayMs }),
  };
}

/** The strategy a gateway with these defences gets. */
export function gatewayLimits(choice: Defences['limits'], config: GatewayLimitConfig): GatewayLimits {
  return choice === 'on' ? AddressAndUserLimits.fromConfig(config) : NO_LIMITS;
}

/**
 * The security service's share of `limits:on`: logins per client address before the password hash
 * (each costs ~60 ms of CPU); the smart lock-out, by (user, source) and by source, never by account
 * alone; and password checks that cost and answer the same for every name (`uniformChecks`: an
 * unknown user, a scrypt user and an imported bcrypt user alike, docs/accounts.md). `off`: none.
 * The lock-out's meters are the shared store's when it has a table for them (`sharedMeters`:
 * replicas on PostgreSQL count every try once, whichever replica it reached), else this process's,
 * saved to `persistence`.
 */
export interface SecurityLimits {
  perClient?: RateLimiter;
  lockout?: LoginLockout;
  uniformChecks: boolean;
}

export function securityLimits(
  choice: Defences['limits'],
  opts: {
    now?: () => number;
    wall?: () => number;
    persistence?: LockoutPersistence;
    sharedMeters?: { table: LockoutTable; now?: () => number };
  } = {},
): SecurityLimits {
  if (choice === 'off') return { uniformChecks: false };
  return {
    perClient: new RateLimiter(20, 40, opts.now),
    lockout:
      opts.sharedMeters !== undefined
        ? new SharedLockout(opts.sharedMeters)
        : new SmartLockout({
            ...(opts.now ? { now: opts.now } : {}),
            ...(opts.wall ? { wall: opts.wall } : {}),
            ...(opts.persistence ? { persistence: opts.persistence } : {}),
          }),
    uniformChecks: true,
  };
}
