import type { Challenge } from '../../../protocol/challenge.js';
import type { PendingLoginTable } from '../../../store/replica-support.js';

/** A login between its two steps: the challenge to sign, or the paper's ticket to encrypt. */
export type PendingLogin =
  | { kind: 'signed-challenge'; challenge: Challenge }
  | { kind: 'encrypted-ticket'; id: string; user: string; ticket: Buffer; expiresAt: number };

/** The logins waiting for their second step, by id; each answered at most once. */
export interface PendingLoginBook {
  add(id: string, login: PendingLogin): Promise<void>;
  /** One use only, whatever the outcome: a captured answer can never be replayed. */
  take(id: string): Promise<PendingLogin | undefined>;
  /** Forgets the expired ones. */
  sweep(): Promise<void>;
}

function expiryOf(p: PendingLogin): number {
  return p.kind === 'signed-challenge' ? p.challenge.expiresAt : p.expiresAt;
}

/** One security service: its pending logins in its memory. */
export class PendingLogins implements PendingLoginBook {
  readonly #pending = new Map<string, PendingLogin>();
  readonly #now: () => number;

  constructor(now: () => number) {
    this.#now = now;
  }

  async add(id: string, login: PendingLogin): Promise<void> {
    this.#pending.set(id, login);
  }

  async take(id: string): Promise<PendingLogin | undefined> {
    const p = this.#pending.get(id);
    this.#pending.delete(id);
    return p;
  }

  async sweep(): Promise<void> {
    const t = this.#now();
    for (const [id, p] of this.#pending) if (expiryOf(p) * 1000 <= t) this.#pending.delete(id);
  }
}

/**
 * Replicas on a shared store (issue 17): the pending logins in the store's table, so that the
 * gateway may send a login's second step to another replica than its first, and the table's
 * DELETE ... RETURNING gives each id to one `take` among all replicas.
 */
export class SharedPendingLogins implements PendingLoginBook {
  readonly #table: PendingLoginTable;
  readonly #now: () => number;

  constructor(table: PendingLoginTable, now: () => number) {
    this.#table = table;
    this.#now = now;
  }

  add(id: string, login: PendingLogin): Promise<void> {
    const wire =
      login.kind === 'encrypted-ticket' ? { ...login, ticket: login.ticket.toString('base64url') } : login;
    return this.#table.add(id, JSON.stringify(wire), expiryOf(login));
  }

  async take(id: string): Promise<PendingLogin | undefined> {
    const text = await this.#table.take(id);
    if (text === undefined) return undefined;
    type Stored =
      | Extract<PendingLogin, { kind: 'signed-challenge' }>
      | (Omit<Extract<PendingLogin, { kind: 'encrypted-ticket' }>, 'ticket'> & { ticket: string });
    const p = JSON.parse(text) as Stored;
    return p.kind === 'encrypted-ticket' ? { ...p, ticket: Buffer.from(p.ticket, 'base64url') } : p;
  }

  sweep(): Promise<void> {
    return this.#table.sweep(Math.floor(this.#now() / 1000));
  }
}

/** The book for this store: shared when it can hold several replicas, else in memory. */
export function pendingLoginsFor(table: PendingLoginTable | undefined, now: () => number): PendingLoginBook {
  return table === undefined ? new PendingLogins(now) : new SharedPendingLogins(table, now);
}
