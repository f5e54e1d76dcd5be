import type { Challenge } from '../../../protocol/challenge.js';

/** A login between its two steps: the challenge to sign, or the paper's ticket to encrypt. */
export type PendingLogin =
  | { kind: 'signed-challenge'; challenge: Challenge }
  | { kind: 'encrypted-ticket'; id: string; user: string; ticket: Buffer; expiresAt: number };

/** The logins waiting for their second step, by id; each answered at most once. */
export class PendingLogins {
  readonly #pending = new Map<string, PendingLogin>();
  readonly #now: () => number;

  constructor(now: () => number) {
    this.#now = now;
  }

  add(id: string, login: PendingLogin): void {
    this.#pending.set(id, login);
  }

  /** One use only, whatever the outcome: a captured answer can never be replayed. */
  take(id: string): PendingLogin | undefined {
    const p = this.#pending.get(id);
    this.#pending.delete(id);
    return p;
  }

  /** Forgets the expired ones. */
  sweep(): void {
    const t = this.#now();
    for (const [id, p] of this.#pending) {
      const exp = p.kind === 'signed-challenge' ? p.challenge.expiresAt : p.expiresAt;
      if (exp * 1000 <= t) this.#pending.delete(id);
    }
  }
}
