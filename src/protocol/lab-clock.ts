/**
 * The lab's one clock (docs/faults.md, "Clocks"): the security service's, carried forward by each
 * part on its own monotonic clock, so that a ticket's `iat` and `exp`, a revocation's `notBefore`
 * and a challenge's expiry are judged by every part on the same time. Each part reading the wall
 * clock for itself let them disagree after a step of it (a part followed a forward step only if it
 * read its clock during the step): the red team locked everyone out with a 5 s blip.
 *
 * The clock is an offset on the monotonic clock: a step of the wall clock, either way, moves
 * nothing. A new lab time from the security service (it restarted, possibly after a step) is taken
 * only when it is ahead: the clock never runs backwards, so nothing that had expired is valid again,
 * whoever sends the time.
 */
export class LabClock {
  readonly #monotonic: () => number;
  /** lab time − monotonic time, in ms; undefined until a lab time is known */
  #offset: number | undefined;

  // Looked up at each call (not bound once) so that tests can fake it.
  constructor(monotonic: () => number = () => performance.now()) {
    this.#monotonic = monotonic;
  }

  /** A lab time is known (`adopt` was called). */
  get started(): boolean {
    return this.#offset !== undefined;
  }

  /**
   * Takes `labTimeMs`, read by the security service when the monotonic clock here read `atMonotonic`
   * (the receipt by default), unless this clock is already at or past it. Returns whether it moved.
   */
  adopt(labTimeMs: number, atMonotonic: number = this.#monotonic()): boolean {
    if (!Number.isFinite(labTimeMs) || !Number.isFinite(atMonotonic)) return false;
    const offset = labTimeMs - atMonotonic;
    if (this.#offset !== undefined && offset <= this.#offset) return false;
    this.#offset = offset;
    return true;
  }

  /** The lab time in ms since the epoch; NaN before any lab time is known (callers refuse NaN). */
  now(): number {
    return this.#offset === undefined ? Number.NaN : this.#monotonic() + this.#offset;
  }
}

/**
 * The field of the security service's `/v1/keys` and `/v1/revocations` answers that carries its lab
 * time (ms since the epoch).
 */
export const LAB_TIME_FIELD = 'labTimeMs';

/** The lab time in an answer of the security service, or undefined when it carries none that is valid. */
export function labTimeOf(body: unknown): number | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const t = (body as Record<string, unknown>)[LAB_TIME_FIELD];
  return typeof t === 'number' && Number.isSafeInteger(t) && t > 0 ? t : undefined;
}

/**
 * How far in the future a ticket's `iat` may be at a part: a part's lab clock is behind the
 * security service's by the one-way delay of the answer it took the time from (it is not corrected
 * for it: a long poll's round trip is mostly its hold). That is well under a millisecond on one
 * machine and a few in Docker; both share the host's monotonic clock, so they do not drift apart.
 * 1 s covers a delay a thousand times that; `iat` is rounded down to the second anyway.
 */
export const IAT_LEEWAY_SECONDS = 1;
