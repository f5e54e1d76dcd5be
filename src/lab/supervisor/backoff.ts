/**
 * When to bring a dead part back, like Docker's `on-failure` restart policy: the first restart
 * after `baseMs`, each next one after twice as long (at most `maxMs`), and no more than
 * `maxRestarts` in a row; a part that then stays up `stableMs` starts counting afresh.
 */
export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
  maxRestarts: number;
  stableMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = {
  baseMs: 1000,
  maxMs: 30_000,
  maxRestarts: 5,
  stableMs: 30_000,
};

export class RestartBackoff {
  private readonly inARow = new Map<string, { count: number; lastStart: number }>();

  constructor(private readonly opts: BackoffOptions = DEFAULT_BACKOFF) {}

  /** The wait before restarting a part that just died (or failed to start), or undefined: give up. */
  delayAfterDeath(name: string, now: number): number | undefined {
    const seen = this.inARow.get(name);
    const count = seen === undefined || now - seen.lastStart >= this.opts.stableMs ? 0 : seen.count;
    if (count >= this.opts.maxRestarts) return undefined;
    return Math.min(this.opts.baseMs * 2 ** count, this.opts.maxMs);
  }

  /**
   * The last restart does not count towards giving up: the part died of something else's doing (a
   * foreign listener on its port made its start fail), not of its own.
   */
  forgive(name: string): void {
    const seen = this.inARow.get(name);
    if (seen !== undefined && seen.count > 0) this.inARow.set(name, { ...seen, count: seen.count - 1 });
  }

  /** A restart was attempted now. */
  started(name: string, now: number): void {
    const seen = this.inARow.get(name);
    const count = seen === undefined || now - seen.lastStart >= this.opts.stableMs ? 0 : seen.count;
    this.inARow.set(name, { count: count + 1, lastStart: now });
  }
}
