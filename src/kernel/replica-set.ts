/**
 * Several replicas of one part (the security service, issue 17) as a caller sees them: the order
 * to try them in for one request. `inTurn` spreads requests over all of them (the gateway's
 * logins); `sticky` keeps to the last one that answered and moves on only when it fails (the
 * control-plane calls and the revocation feed, which need no spreading). With one replica both
 * are that one.
 */
export class ReplicaSet {
  readonly urls: readonly string[];
  #next = 0;

  constructor(urls: readonly string[]) {
    if (urls.length === 0) throw new Error('a replica set needs at least one address');
    this.urls = urls;
  }

  /** Every replica once, starting with the next in turn (which then moves on). */
  inTurn(): string[] {
    const start = this.#next;
    this.#next = (this.#next + 1) % this.urls.length;
    return this.#from(start);
  }

  /** Every replica once, starting with the one that last answered. */
  sticky(): string[] {
    return this.#from(this.#next);
  }

  /** `url` answered: sticky callers start there next time. */
  answered(url: string): void {
    const i = this.urls.indexOf(url);
    if (i >= 0) this.#next = i;
  }

  /**
   * `send` to the one that last answered, and to the next only when it never reached that one
   * (`neverReached`): a request that was sent may have been acted on, and is not sent twice.
   */
  async callSticky<T>(send: (url: string) => Promise<T>): Promise<T> {
    const order = this.sticky();
    for (const [i, url] of order.entries()) {
      try {
        const answer = await send(url);
        this.answered(url);
        return answer;
      } catch (err) {
        if (i === order.length - 1 || neverReached(err) === undefined) throw err;
      }
    }
    throw new Error('unreachable: a replica set is never empty');
  }

  #from(start: number): string[] {
    return this.urls.map((_, i) => this.urls[(start + i) % this.urls.length] as string);
  }
}

const NEVER_REACHED: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'its name does not resolve',
  UND_ERR_CONNECT_TIMEOUT: 'connect timeout',
};

/**
 * Why a request never reached its server (nothing listens, the name does not resolve, the
 * connection was not made in time), found down the chain of causes; undefined otherwise. Such a
 * request was never sent, so sending it to another replica cannot do anything twice.
 */
export function neverReached(err: unknown): string | undefined {
  for (
    let e = err as { code?: unknown; cause?: unknown } | undefined, i = 0;
    e && i < 5;
    e = e.cause as typeof e, i++
  ) {
    if (typeof e.code === 'string' && Object.hasOwn(NEVER_REACHED, e.code)) return NEVER_REACHED[e.code];
  }
  return undefined;
}
