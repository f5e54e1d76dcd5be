/**
 * The clock of durations here (refills, lock-outs): monotonic, so a wall clock stepped back or
 * forward (NTP, an operator, a VM resumed) neither locks clients out for the step's length nor
 * forgives them early. An injected clock (tests, or a wall clock) is guarded as well: time that
 * seems to run backwards counts as no time.
 */
export const monotonicNow = (): number => performance.now();

/**
 * Set by the gateway on an answer whose request waited for the user's rate (its value: the wait in
 * ms), so a client, and the DoS scenarios' judge, can see the limit engaged though the answer is a
 * 2xx: the standard RateLimit headers say what is left, not that a request was held back.
 */
export const RATE_WAIT_HEADER = 'x-tms-rate-wait-ms';

/**
 * Token buckets keyed by a string (a user, a client address). Bounded: when full, the oldest
 * bucket is dropped, which can only forgive a client, never block one wrongly. Clock injectable.
 */
export class RateLimiter {
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
    private readonly now: () => number = monotonicNow,
    private readonly maxKeys = 10_000,
  ) {}

  /** Takes one token for `key`; false when the bucket is empty (the request should be refused). */
  take(key: string): boolean {
    const b = this.#bucket(key);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** True when `key` has a token left, taking none: for costs known only afterwards (a failed login). */
  peek(key: string): boolean {
    return this.#bucket(key).tokens >= 1;
  }

  /**
   * Reserves `key`'s next token: how long to wait for it (0: now), or undefined, reserving nothing,
   * when that is more than `maxWaitMs`. Waiting instead of refusing (nginx's limit_req with a burst
   * queue) matters against a flood: a refused client that asks again at once keeps the server busy
   * answering 429s, while a client made to wait sends no more than the rate allows.
   */
  reserve(key: string, maxWaitMs: number): number | undefined {
    const b = this.#bucket(key);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    const waitMs = ((1 - b.tokens) / this.ratePerSecond) * 1000;
    if (!(waitMs <= maxWaitMs)) return undefined;
    b.tokens -= 1;
    return waitMs;
  }

  /** The bucket of `key`, refilled up to now (tokens below zero are reservations being waited for). */
  #bucket(key: string): { tokens: number; at: number } {
    const t = this.now();
    let b = this.#buckets.get(key);
    if (b === undefined) {
      if (this.#buckets.size >= this.maxKeys)
        this.#buckets.delete(this.#buckets.keys().next().value as string);
      b = { tokens: this.burst, at: t };
      this.#buckets.set(key, b);
    } else {
      // A clock stepped back gives no refill, never a debt of the step's length.
      b.tokens = Math.min(this.burst, b.tokens + (Math.max(0, t - b.at) / 1000) * this.ratePerSecond);
      b.at = t;
      // Most recently used last, so eviction drops the idlest key, never a busy flooder's bucket.
      this.#buckets.delete(key);
      this.#buckets.set(key, b);
    }
    return b;
  }
}

/**
 * At most `limit` operations in flight per key (a client address); up to `queue` more wait their
 * turn, in order; beyond that, refused. One client then cannot fill a scarce worker (the password
 * hashes of the security service) however many requests it opens, and other clients never queue
 * behind it. Only keys with work in flight are kept.
 */
export class KeyedConcurrency {
  readonly #slots = new Map<string, { active: number; waiting: (() => void)[] }>();

  constructor(
    private readonly limit: number,
    private readonly queue: number,
  ) {}

  /** Whether an acquire for this key now would wait for a slot (or be refused). */
  busy(key: string): boolean {
    return (this.#slots.get(key)?.active ?? 0) >= this.limit;
  }

  /** A release function once a slot is free; undefined at once when the key's queue is full. */
  async acquire(key: string): Promise<(() => void) | undefined> {
    let slot = this.#slots.get(key);
    if (slot === undefined) {
      slot = { active: 0, waiting: [] };
      this.#slots.set(key, slot);
    }
    const s = slot;
    if (s.active >= this.limit) {
      if (s.waiting.length >= this.queue) return undefined;
      // The releasing holder hands its slot over: `active` stays as it is.
      await new Promise<void>((resolve) => s.waiting.push(resolve));
    } else {
      s.active += 1;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = s.waiting.shift();
      if (next !== undefined) return next();
      s.active -= 1;
      if (s.active === 0) this.#slots.delete(key);
    };
  }
}
