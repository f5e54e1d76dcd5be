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
 * told about. Replaced whole, by a push from the security service (`replace`) or by a poll
 * (`refresh`). A poll that was in flight while a push arrived is dropped, so a stale answer can never
 * re-trust a service the push has just marked untrusted.
 */
export class AttestationTable {
  #states = new Map<string, AttestationState>();
  #generation = 0;

  constructor(entries: readonly AttestationEntry[] = []) {
    if (entries.length > 0) this.replace(entries);
  }

  state(name: string): AttestationState {
    return this.#states.get(name) ?? 'unknown';
  }

  /** Replaces the whole table; INVALID_INPUT (and no change) when an entry is malformed. */
  replace(entries: readonly AttestationEntry[]): void {
    this.#states = toStates(entries);
    this.#generation += 1;
  }

  /**
   * Replaces the table with what `fetcher` answers. False, keeping the last table, when the fetch
   * fails, its answer is malformed, or a `replace` happened meanwhile (its answer may be older).
   */
  async refresh(fetcher: () => Promise<readonly AttestationEntry[]>): Promise<boolean> {
    const generation = this.#generation;
    let next: Map<string, AttestationState>;
    try {
      next = toStates(await fetcher());
    } catch {
      return false;
    }
    if (generation !== this.#generation) return false;
    this.#states = next;
    this.#generation += 1;
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
