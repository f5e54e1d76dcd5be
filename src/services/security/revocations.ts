import { randomBytes } from 'node:crypto';
import { isAttested } from '../../defences/attestation-table.js';
import { parseRevocationList, type RevocationList } from '../../protocol/revocation-list.js';
import type { ServiceRecord } from '../../store/schema.js';
import type { LabStore } from '../../store/store.js';
import type { Propagation } from '../../users/revocations.js';

/** How long a long poll is held when nothing changes. */
export const HOLD_MS = 20_000;
/** How long an admin change waits for the parts that were listening to confirm they hold it. */
export const CONFIRM_MS = 1000;
/** Part names remembered for confirmations (they are self-declared: bounded). */
const MAX_PARTS = 1000;
/**
 * A part answered this recently and not back yet is between two polls (applying the list it got):
 * a change waits for its confirmation too, not only for the polls held at that moment. A busy
 * machine stretches that moment, and the change's answer counted such a part out.
 */
const BETWEEN_POLLS_MS = 5000;
/** Polls held at once; beyond, answered at once (the lab has ~21 listeners; a flood must not pile up). */
const MAX_WAITERS = 1000;

// ---- the security service: the published list, its long poll, and who confirmed it

interface Waiter {
  part: string | undefined;
  done: (list: RevocationList) => void;
}

interface PendingConfirmation {
  n: number;
  expected: Set<string>;
  done: () => void;
}

/** The list as the security service publishes it, rebuilt from the store after every change. */
export class RevocationBook {
  readonly #store: LabStore;
  /** new at each start: a part holding an older list always gets the current one at once */
  readonly #epoch = randomBytes(6).toString('base64url');
  #n = 0;
  #list: RevocationList = { version: `${this.#epoch}.0`, users: {}, quarantined: [], untrusted: [] };
  readonly #waiters = new Set<Waiter>();
  /** part → the highest version number it said it holds */
  readonly #held = new Map<string, number>();
  readonly #pending = new Set<PendingConfirmation>();
  /** part → when its last poll was answered, while it has not asked again (BETWEEN_POLLS_MS) */
  readonly #answered = new Map<string, number>();

  readonly #namesUntrusted: boolean;

  /**
   * `namesUntrusted`: the lab refuses services whose attestation did not pass (the gateway does)
   * and its peers know a caller by its certificate (mTLS), so the list names those services for
   * them. Otherwise nobody could act on the names (plain links), or nobody measures and every
   * service would stay `unknown` (no attestation): the list keeps `untrusted` empty.
   */
  /** how long a poll is held when nothing changes: HOLD_MS, or less for signed feeds' heartbeat */
  readonly #holdMs: number;

  constructor(store: LabStore, opts: { namesUntrusted?: boolean; holdMs?: number } = {}) {
    this.#store = store;
    this.#namesUntrusted = opts.namesUntrusted === true;
    this.#holdMs = opts.holdMs ?? HOLD_MS;
  }

  /** Reads the store and publishes what it holds; call at start and after every change. */
  async load(): Promise<void> {
    const content = await this.#read();
    this.#n += 1;
    this.#list = parseRevocationList({ version: `${this.#epoch}.${this.#n}`, ...content });
  }

  /**
   * Another replica changed the store (issue 17): publishes again when what the list holds
   * changed, so the parts following this replica get it within one round trip of their feed.
   */
  async storeChanged(): Promise<void> {
    const { version: _version, ...held } = this.#list;
    if (JSON.stringify(await this.#read()) === JSON.stringify(held)) return;
    await this.publish();
  }

  async #read(): Promise<Omit<RevocationList, 'version'>> {
    const data = await this.#store.data();
    const r = data.revocations;
    return {
      users: Object.fromEntries(
        Object.values(r?.users ?? {}).map((u) => [
          u.name,
          { notBefore: u.notBefore, revoked: u.revoked, ...(u.keys ? { keys: u.keys } : {}) },
        ]),
      ),
      quarantined: Object.keys(r?.services ?? {}).sort(),
      untrusted: this.#untrustedIn(data.services),
    };
  }

  /**
   * After attestations or registrations: publishes the list again when the services it names as
   * untrusted changed, so that peers refuse a service that just failed (or serve one that passed
   * again) within one round trip of the feed.
   */
  async attestationsChanged(): Promise<void> {
    const now = this.#untrustedIn((await this.#store.data()).services);
    if (now.join() === this.#list.untrusted.join()) return;
    await this.publish();
  }

  /** Registered services whose latest attestation is not a pass (the gateway's rule, isAttested). */
  #untrustedIn(services: Record<string, ServiceRecord>): string[] {
    if (!this.#namesUntrusted) return [];
    return Object.values(services)
      .filter((s) => !isAttested(s.attestation?.state))
      .map((s) => s.name)
      .sort();
  }

  list(): RevocationList {
    return this.#list;
  }

  /** Polls held open right now. */
  get listening(): number {
    return this.#waiters.size;
  }

  userRevoked(name: string): boolean {
    return Object.hasOwn(this.#list.users, name) && this.#list.users[name]?.revoked === true;
  }

  quarantined(name: string): boolean {
    return this.#list.quarantined.includes(name);
  }

  /** Re-reads the store, answers every held poll, and waits (≤ CONFIRM_MS) for their confirmations. */
  async publish(): Promise<Propagation> {
    const expected = new Set<string>();
    for (const w of this.#waiters) if (w.part !== undefined) expected.add(w.part);
    const since = performance.now() - BETWEEN_POLLS_MS;
    for (const [part, at] of this.#answered) {
      if (at >= since) expected.add(part);
      else this.#answered.delete(part);
    }
    await this.load();
    const t0 = performance.now();
    const n = this.#n;
    const list = this.#list;
    let done = (): void => undefined;
    const confirmed = new Promise<void>((resolve) => {
      done = resolve;
    });
    const pending: PendingConfirmation = { n, expected, done };
    this.#pending.add(pending);
    for (const w of this.#waiters) w.done(list);
    this.#waiters.clear();
    this.#check(pending);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((r) => {
      timer = setTimeout(r, CONFIRM_MS);
    });
    await Promise.race([confirmed, timeout]);
    clearTimeout(timer);
    this.#pending.delete(pending);
    const count = [...expected].filter((p) => (this.#held.get(p) ?? 0) >= n).length;
    return { parts: expected.size, confirmed: count, ms: Math.round(performance.now() - t0) };
  }

  /**
   * One long poll: the current list at once when `since` is not its version, else when it changes
   * or after HOLD_MS. `part` names the asker, for confirmations only.
   */
  next(
    since: string | undefined,
    part: string | undefined,
    onClose: (cb: () => void) => void,
  ): Promise<RevocationList> | RevocationList {
    if (part !== undefined) this.#answered.delete(part);
    if (part !== undefined && since !== undefined) this.#confirm(part, since);
    if (since !== this.#list.version || this.#waiters.size >= MAX_WAITERS) {
      this.#answering(part);
      return this.#list;
    }
    return new Promise((resolve) => {
      const waiter: Waiter = {
        part,
        done: (list) => {
          clearTimeout(timer);
          this.#answering(part);
          resolve(list);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        this.#answering(part);
        resolve(this.#list);
      }, this.#holdMs);
      this.#waiters.add(waiter);
      onClose(() => {
        clearTimeout(timer);
        this.#waiters.delete(waiter);
      });
    });
  }

  /** Answers every held poll (the service is closing). */
  releaseAll(): void {
    for (const w of this.#waiters) w.done(this.#list);
    this.#waiters.clear();
  }

  /** A named part's poll is answered: until it asks again, it is between polls. */
  #answering(part: string | undefined): void {
    if (part === undefined) return;
    if (!this.#answered.has(part) && this.#answered.size >= MAX_PARTS) this.#answered.clear();
    this.#answered.set(part, performance.now());
  }

  #confirm(part: string, since: string): void {
    const [epoch, n] = since.split('.');
    if (epoch !== this.#epoch || n === undefined) return;
    if (!this.#held.has(part) && this.#held.size >= MAX_PARTS) this.#held.clear();
    this.#held.set(part, Math.max(this.#held.get(part) ?? 0, Number(n)));
    for (const p of this.#pending) this.#check(p);
  }

  #check(p: PendingConfirmation): void {
    for (const part of p.expected) if ((this.#held.get(part) ?? 0) < p.n) return;
    p.done();
  }
}
