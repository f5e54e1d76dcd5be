/**
 * Token buckets keyed by a string (a user, a client address). Bounded: when full, the oldest
 * bucket is dropped, which can only forgive a client, never block one wrongly. Clock injectable.
 */
export class RateLimiter {
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
    private readonly now: () => number = Date.now,
    private readonly maxKeys = 10_000,
  ) {}

  /** Takes one token for `key`; false when the bucket is empty (the request should be refused). */
  take(key: string): boolean {
    const t = this.now();
    let b = this.#buckets.get(key);
    if (b === undefined) {
      if (this.#buckets.size >= this.maxKeys)
        this.#buckets.delete(this.#buckets.keys().next().value as string);
      b = { tokens: this.burst, at: t };
      this.#buckets.set(key, b);
    } else {
      b.tokens = Math.min(this.burst, b.tokens + ((t - b.at) / 1000) * this.ratePerSecond);
      b.at = t;
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
}

/** Failed logins per user: after `maxFailures` within `windowMs`, the user is locked for `lockMs`. */
export class LoginLockout {
  readonly #failures = new Map<string, { count: number; first: number; lockedUntil: number }>();

  constructor(
    private readonly maxFailures = 5,
    private readonly windowMs = 10 * 60_000,
    private readonly lockMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  isLocked(user: string): boolean {
    const f = this.#failures.get(user);
    return f !== undefined && f.lockedUntil > this.now();
  }

  fail(user: string): void {
    const t = this.now();
    let f = this.#failures.get(user);
    if (f === undefined || t - f.first > this.windowMs) {
      f = { count: 0, first: t, lockedUntil: 0 };
      if (this.#failures.size >= 10_000) this.#failures.delete(this.#failures.keys().next().value as string);
      this.#failures.set(user, f);
    }
    f.count += 1;
    if (f.count >= this.maxFailures) f.lockedUntil = t + this.lockMs;
  }

  succeed(user: string): void {
    this.#failures.delete(user);
  }
}
