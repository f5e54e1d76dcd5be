import { TrustedMsError } from '../errors.js';

export type AttestationState = 'trusted' | 'untrusted' | 'unknown';

/** Whether an attestation state lets a service serve: its latest attestation matched. */
export function isAttested(state: AttestationState | undefined): boolean {
  return state === ATTESTED;
}
const ATTESTED: AttestationState = 'trusted';

export interface AttestationEntry {
  name: string;
  state: AttestationState;
}

const STATES: ReadonlySet<string> = new Set(['trusted', 'untrusted', 'unknown']);
const NAME_RE = /^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
export const MAX_ATTESTATION_ENTRIES = 10_000;

/**
 * The gateway's view of each service's attestation: name → state, `unknown` for a name it was never
 * told about. Replaced whole, by a push from the security service (`replace`) or by a fetch
 * (`refresh`, a poll or the fetch a push prompts). Of two answers, the one **asked last** wins,
 * whatever order they arrive in: a poll asked before a service was found untrusted can answer after
 * the fetch that carries the new verdict, and must not bring "trusted" back (nor be dropped in its
 * place: an earlier rule, "a fetch that was in flight while another change landed is dropped",
 * dropped the new verdict when the old poll landed first, and the gateway served it until the next
 * poll). A push (`replace`) counts as asked when it arrives.
 */
export class AttestationTable {
  #states = new Map<string, AttestationState>();
  /** Each change asked for (a push, a fetch started) gets the next number... */
  #asked = 0;
  /** ...and the table holds the answer to the highest one applied. */
  #applied = 0;

  constructor(entries: readonly AttestationEntry[] = []) {
    if (entries.length > 0) this.replace(entries);
  }

  state(name: string): AttestationState {
    return this.#states.get(name) ?? 'unknown';
  }

  /** Replaces the whole table; INVALID_INPUT (and no change) when an entry is malformed. */
  replace(entries: readonly AttestationEntry[]): void {
    const next = toStates(entries);
    this.#asked += 1;
    this.#states = next;
    this.#applied = this.#asked;
  }

  /**
   * Replaces the table with what `fetcher` answers. False, keeping the table, when the fetch fails,
   * its answer is malformed, or a change asked after this one was applied meanwhile.
   */
  async refresh(fetcher: () => Promise<readonly AttestationEntry[]>): Promise<boolean> {
    this.#asked += 1;
    const mine = this.#asked;
    let next: Map<string, AttestationState>;
    try {
      next = toStates(await fetcher());
    } catch {
      return false;
    }
    if (mine < this.#applied) return false;
    this.#states = next;
    this.#applied = mine;
    return true;
  }

  snapshot(): AttestationEntry[] {
    return [...this.#states].map(([name, state]) => ({ name, state }));
  }
}

/** Checks an untrusted list of entries (a request body, a poll answer). */
export function parseAttestationEntries(x: unknown): AttestationEntry[] {
  const bad = (why: string) => new TrustedMsError('INVALID_INPUT', `attestation list is invalid: ${why}`);
  if (!Array.isArray(x)) throw bad('expected an array');
  if (x.length > MAX_ATTESTATION_ENTRIES) throw bad('too many entries');
  return x.map((e) => {
    if (typeof e !== 'object' || e === null) throw bad('entry is not an object');
    const { name, state } = e as Record<string, unknown>;
    if (typeof name !== 'string' || !NAME_RE.test(name)) throw bad('bad service name');
    if (typeof state !== 'string' || !STATES.has(state)) throw bad(`bad state for ${name}`);
    return { name, state: state as AttestationState };
  });
}

function toStates(entries: readonly AttestationEntry[]): Map<string, AttestationState> {
  return new Map(parseAttestationEntries(entries).map((e) => [e.name, e.state]));
}
