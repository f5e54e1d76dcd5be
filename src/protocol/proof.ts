import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { type ErrorCode, TrustedMsError } from '../errors.js';
import { forwardOnlyClock } from './clock.js';

/**
 * Proof of possession for one request (trusted posture; docs/protocol.md, "The proof header"): an
 * HMAC-SHA256 keyed by the session key over the request, carried in the `tms-proof` header as
 * `v1.<t>.<nonce>.<mac>`. One HMAC and one SHA-256 of the body per request, instead of a signature
 * check (an order of magnitude cheaper; see DESIGN.md).
 */

export const PROOF_HEADER = 'tms-proof';
export const PROOF_TAG = 'trusted-ms proof v1';
export const DEFAULT_PROOF_WINDOW_MS = 30_000;
export const DEFAULT_REPLAY_CACHE_ENTRIES = 500_000;
/** A user's share of the default cache: a sixteenth (see ProofVerifierOptions.maxEntriesPerUser). */
export const DEFAULT_REPLAY_QUOTA_PER_USER = DEFAULT_REPLAY_CACHE_ENTRIES / 16;
/** How long what is forgotten of a ticket's proofs is kept: longer than a ticket lives (an hour). */
const FORGOTTEN_KEEP_MS = 86_400_000;

/** Why a proof was refused: for the audit log only, never sent to the client. */
export type ProofRefusalReason =
  | 'missing'
  | 'malformed'
  | 'outside-window'
  | 'bad-mac'
  | 'replayed'
  | 'before-start'
  | 'before-clock-step'
  | 'replay-cache-full'
  | 'replay-quota'
  | 'ahead-unrecorded';

/** A refusal of a proof; `message` is generic, `reason` (not in `toJSON()`) is for the audit log. */
export class ProofError extends TrustedMsError {
  readonly reason: ProofRefusalReason;
  constructor(code: ErrorCode, message: string, reason: ProofRefusalReason) {
    super(code, message);
    this.reason = reason;
  }
}

const GENERIC = 'proof verification failed';
const refuse = (reason: ProofRefusalReason) => new ProofError('PROOF_INVALID', GENERIC, reason);

const HEADER_RE = /^v1\.([1-9][0-9]{0,15})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$/;
const METHOD_RE = /^[A-Z]{1,16}$/;
/** A request target in origin form: `/`, then printable ASCII without spaces. */
const PATH_RE = /^\/[\x21-\x7e]*$/;
const MAX_PATH_CHARS = 8192;
const JTI_RE = /^[A-Za-z0-9_-]{16,128}$/;
const EMPTY_BODY_SHA256 = createHash('sha256').digest('hex');

export type ProofBody = Uint8Array | string | undefined;

export interface ProofRequest {
  /** The 32-byte session key. */
  sessionKey: Buffer;
  /** The HTTP method as sent, upper case. */
  method: string;
  /** The request target as sent to the gateway: path and query, exactly as on the wire. */
  path: string;
  /** The body bytes (a string is taken as UTF-8); nothing for no body. */
  body?: ProofBody;
  /** The `jti` of the ticket the request carries. */
  jti: string;
}

function bodyDigest(body: ProofBody): string {
  if (body === undefined || body.length === 0) return EMPTY_BODY_SHA256;
  return createHash('sha256').update(body).digest('hex');
}

/** The exact bytes the MAC covers (see docs/protocol.md), as text. */
export function proofCanonicalString(
  method: string,
  path: string,
  t: number,
  nonce: string,
  body: ProofBody,
  jti: string,
): string {
  return `${PROOF_TAG}\n${method}\n${path}\n${t}\n${nonce}\n${bodyDigest(body)}\n${jti}\n`;
}

function checkRequest(r: ProofRequest): boolean {
  return (
    Buffer.isBuffer(r.sessionKey) &&
    r.sessionKey.length === 32 &&
    typeof r.method === 'string' &&
    METHOD_RE.test(r.method) &&
    typeof r.path === 'string' &&
    r.path.length <= MAX_PATH_CHARS &&
    PATH_RE.test(r.path) &&
    typeof r.jti === 'string' &&
    JTI_RE.test(r.jti) &&
    (r.body === undefined || typeof r.body === 'string' || r.body instanceof Uint8Array)
  );
}

function mac(r: ProofRequest, t: number, nonce: string): Buffer {
  return createHmac('sha256', r.sessionKey)
    .update(proofCanonicalString(r.method, r.path, t, nonce, r.body, r.jti), 'utf8')
    .digest();
}

/**
 * Nonces come from a pool of random bytes refilled 4 KiB at a time: one `randomBytes` call per
 * request measured ~9 us here, more than the HMAC and the body hash together. Each byte is used once.
 */
const NONCE_BYTES = 16;
const NONCE_POOL_BYTES = 4096;
let noncePool = Buffer.alloc(0);
let noncePoolOffset = 0;

function freshNonce(): string {
  if (noncePoolOffset + NONCE_BYTES > noncePool.length) {
    noncePool = randomBytes(NONCE_POOL_BYTES);
    noncePoolOffset = 0;
  }
  const nonce = noncePool.toString('base64url', noncePoolOffset, noncePoolOffset + NONCE_BYTES);
  noncePoolOffset += NONCE_BYTES;
  return nonce;
}

/** The `tms-proof` header value for one request: a fresh nonce, the time `now()` in ms. */
export function createProof(r: ProofRequest & { now?: () => number }): string {
  if (!checkRequest(r)) {
    throw new TrustedMsError('INVALID_INPUT', 'proof request is invalid: check key, method, path and jti');
  }
  const t = Math.floor((r.now ?? Date.now)());
  if (!Number.isSafeInteger(t) || t <= 0) throw new TrustedMsError('INVALID_INPUT', 'clock is invalid');
  const nonce = freshNonce();
  return `v1.${t}.${nonce}.${mac(r, t, nonce).toString('base64url')}`;
}

export interface ProofVerifierOptions {
  /** A proof is accepted while |now − t| ≤ windowMs; 30,000 by default. */
  windowMs?: number;
  /**
   * The wall clock in milliseconds; `Date.now` by default. The window is judged on it as read (the
   * clients stamp their proofs on the same wall clock); the replay cache forgets on it read through
   * `forwardOnlyClock`, so a step back does not forget early.
   */
  now?: () => number;
  /**
   * The monotonic clock in milliseconds (`performance.now` by default): what is forgotten of a
   * ticket is kept for FORGOTTEN_KEEP_MS of it, real time that no step of the wall clock shortens.
   */
  monotonic?: () => number;
  /** Most (jti, nonce) pairs remembered; when full, new proofs are refused. 500,000 by default. */
  maxEntries?: number;
  /**
   * Most pairs one user (the ticket's subject, else its jti) may hold in the cache, checked before
   * its proof is stored: one user who fills its share is refused (RATE_LIMITED, reason
   * `replay-quota`) while everyone else still has room. 31,250 by default (a sixteenth of the
   * default cache: 5x what the gateway's per-user rate, 100/s with a burst of 200, can put in a 60 s
   * window).
   */
  maxEntriesPerUser?: number;
  /**
   * Proofs stamped before this millisecond are refused as possible replays: the replay cache is in
   * memory, so a verifier that starts (a restarted gateway) has not seen the proofs accepted before
   * it. Set it to the time the verifier's process started. None by default. Not applied to a ticket
   * issued after it (see `ticketIssuedAtMs`): no earlier verifier saw its proofs, and after a wall
   * clock stepped back its fresh proofs are stamped before it.
   */
  notBeforeMs?: number;
  /**
   * The lab clock when the verifier started, which `ticketIssuedAtMs` is compared with (tickets'
   * `iat` are on the lab clock, proofs' stamps on the clients' wall clocks); `notBeforeMs` by default.
   */
  ticketsIssuedFromMs?: number;
  /**
   * jti → the newest stamp of that ticket's proofs that an earlier verifier accepted **ahead** of its
   * clock (a client whose clock runs fast). `notBeforeMs` covers only proofs stamped before the
   * start; these are the ones stamped after it, which a captured request could replay once after a
   * restart. A proof of such a ticket stamped no later is refused (`before-start`).
   */
  aheadOfStart?: ReadonlyMap<string, number>;
  /**
   * Called before a proof stamped ahead of this verifier's clock is accepted, with its ticket and
   * stamp, so that they outlive this verifier (`aheadOfStart` of the next one). Throws to refuse it.
   */
  recordAhead?: (jti: string, t: number) => void;
}

/**
 * Checks proofs and refuses replays. Order: form (PROOF_INVALID), time window (PROOF_INVALID),
 * MAC with a constant-time comparison (PROOF_INVALID), then replay (PROOF_REPLAYED); all
 * PROOF_INVALID refusals share one message. Only proofs with a good MAC enter the replay cache, so
 * nobody without the session key can fill it.
 *
 * The replay cache keeps each (jti, nonce) until its proof leaves the window (t + windowMs). When it
 * is full it **refuses** new proofs (RATE_LIMITED, reason `replay-cache-full`) rather than forget a
 * pair that could still be replayed: failing closed costs availability for a moment, forgetting
 * would let a captured request through. The bound is meant to be far above the lab's request rate
 * times the window (500,000 ≈ 16k req/s for 30 s).
 *
 * A wall clock stepped back brings proofs the cache has already forgotten back into the window. So
 * for each ticket (jti) it keeps, for a day (longer than a ticket lives), the newest time of a forgotten proof, and
 * refuses a proof of that ticket stamped no later (PROOF_REPLAYED, reason `before-clock-step`). With
 * a clock that never steps back no such proof is inside the window anyway. After a step back, the
 * sessions in use then are refused until the clock is back where it was, or until their user logs
 * in again: a new ticket has nothing forgotten (docs/faults.md).
 */
export class ProofVerifier {
  readonly #windowMs: number;
  readonly #wall: () => number;
  readonly #now: () => number;
  readonly #monotonic: () => number;
  readonly #maxEntries: number;
  readonly #maxEntriesPerUser: number;
  readonly #notBeforeMs: number;
  readonly #ticketsIssuedFromMs: number;
  readonly #aheadOfStart: ReadonlyMap<string, number> | undefined;
  readonly #recordAhead: ((jti: string, t: number) => void) | undefined;
  /** `${jti}.${nonce}` → the millisecond after which its proof is outside the window, and whose it is. */
  readonly #seen = new Map<string, { until: number; user: string }>();
  /** user → how many of its pairs the cache holds (only users with at least one). */
  readonly #perUser = new Map<string, number>();
  /** jti → the newest proof time of it forgotten, and until when (monotonic) that is kept. */
  readonly #forgotten = new Map<string, { upToMs: number; keepUntilMs: number }>();
  #lastFullSweep = Number.NEGATIVE_INFINITY;
  #lastForgottenSweep = Number.NEGATIVE_INFINITY;

  constructor(opts: ProofVerifierOptions = {}) {
    this.#windowMs = opts.windowMs ?? DEFAULT_PROOF_WINDOW_MS;
    this.#wall = opts.now ?? Date.now;
    this.#now = forwardOnlyClock(this.#wall);
    this.#monotonic = opts.monotonic ?? (() => performance.now());
    this.#maxEntries = opts.maxEntries ?? DEFAULT_REPLAY_CACHE_ENTRIES;
    this.#maxEntriesPerUser = opts.maxEntriesPerUser ?? DEFAULT_REPLAY_QUOTA_PER_USER;
    this.#notBeforeMs = opts.notBeforeMs ?? 0;
    this.#ticketsIssuedFromMs = opts.ticketsIssuedFromMs ?? this.#notBeforeMs;
    this.#aheadOfStart = opts.aheadOfStart;
    this.#recordAhead = opts.recordAhead;
    if (!Number.isSafeInteger(this.#windowMs) || this.#windowMs <= 0) {
      throw new TrustedMsError('INVALID_INPUT', 'windowMs must be a positive whole number');
    }
    if (!Number.isSafeInteger(this.#maxEntries) || this.#maxEntries <= 0) {
      throw new TrustedMsError('INVALID_INPUT', 'maxEntries must be a positive whole number');
    }
    if (!Number.isSafeInteger(this.#maxEntriesPerUser) || this.#maxEntriesPerUser <= 0) {
      throw new TrustedMsError('INVALID_INPUT', 'maxEntriesPerUser must be a positive whole number');
    }
  }

  /** Number of (jti, nonce) pairs remembered. */
  get size(): number {
    return this.#seen.size;
  }

  /** Number of pairs of `user` remembered. */
  sizeOf(user: string): number {
    return this.#perUser.get(user) ?? 0;
  }

  /**
   * Returns when the proof is good and new; throws a ProofError otherwise. `ticketIssuedAtMs`: the
   * `iat` of the ticket carrying `jti`, in milliseconds, when known; `user`: the ticket's subject,
   * whose quota the proof counts against (the jti when not given).
   */
  verify(r: ProofRequest & { header: string | undefined; ticketIssuedAtMs?: number; user?: string }): void {
    if (r.header === undefined || r.header === '') throw refuse('missing');
    const m = typeof r.header === 'string' && r.header.length <= 128 ? HEADER_RE.exec(r.header) : null;
    if (m === null || !checkRequest(r)) throw refuse('malformed');
    const t = Number(m[1]);
    const nonce = m[2]!;
    const given = Buffer.from(m[3]!, 'base64url');
    if (!Number.isSafeInteger(t) || given.toString('base64url') !== m[3]) throw refuse('malformed');
    if (Buffer.from(nonce, 'base64url').toString('base64url') !== nonce) throw refuse('malformed');
    if (!(Math.abs(this.#wall() - t) <= this.#windowMs)) throw refuse('outside-window');
    if (!timingSafeEqual(given, mac(r, t, nonce))) throw refuse('bad-mac');
    const issuedBeforeStart = !(
      r.ticketIssuedAtMs !== undefined && r.ticketIssuedAtMs >= this.#ticketsIssuedFromMs
    );
    if (issuedBeforeStart) {
      if (t < this.#notBeforeMs) throw new ProofError('PROOF_REPLAYED', 'proof already used', 'before-start');
      const ahead = this.#aheadOfStart?.get(r.jti);
      if (ahead !== undefined && t <= ahead) {
        throw new ProofError('PROOF_REPLAYED', 'proof already used', 'before-start');
      }
    }

    const now = this.#now();
    this.#sweep(now);
    const forgotten = this.#forgotten.get(r.jti);
    if (forgotten !== undefined && t <= forgotten.upToMs) {
      throw new ProofError('PROOF_REPLAYED', 'proof already used', 'before-clock-step');
    }
    const key = `${r.jti}.${nonce}`;
    const seen = this.#seen.get(key);
    // Still in the cache is seen, expired or not. Without a step of the clock an expired entry's
    // proof is outside the window and refused above; after a step back, a new proof's entry is
    // expired on arrival on the never-back clock and stays until a sweep reaches it, forgotten
    // only then (the red team replayed such proofs when "seen" also required unexpired).
    if (seen !== undefined) {
      throw new ProofError('PROOF_REPLAYED', 'proof already used', 'replayed');
    }
    const user = r.user ?? r.jti;
    // The user's share first: one user at its quota is refused alone, before it can take the room
    // every other user needs from the global cap below.
    if (this.sizeOf(user) >= this.#maxEntriesPerUser) {
      this.#sweep(now, true);
      if (this.sizeOf(user) >= this.#maxEntriesPerUser) {
        throw new ProofError('RATE_LIMITED', 'too many requests, try again shortly', 'replay-quota');
      }
    }
    if (this.#seen.size >= this.#maxEntries) {
      this.#sweep(now, true);
      if (this.#seen.size >= this.#maxEntries) {
        throw new ProofError('RATE_LIMITED', 'too many requests, try again shortly', 'replay-cache-full');
      }
    }
    // Stamped ahead of this clock: a verifier started after this one stops at its wall clock at
    // start, which such a stamp may pass, so the stamp must outlive this process first.
    if (this.#recordAhead !== undefined && t > now) this.#recordAhead(r.jti, t);
    this.#seen.set(key, { until: t + this.#windowMs, user });
    this.#perUser.set(user, this.sizeOf(user) + 1);
  }

  /** Drops `key` from the replay cache, remembering how recent a proof of its ticket it forgets. */
  #forget(key: string, { until, user }: { until: number; user: string }): void {
    this.#seen.delete(key);
    const left = this.sizeOf(user) - 1;
    if (left > 0) this.#perUser.set(user, left);
    else this.#perUser.delete(user);
    const jti = key.slice(0, key.indexOf('.'));
    const upToMs = until - this.#windowMs;
    const f = this.#forgotten.get(jti);
    if (f !== undefined) f.upToMs = Math.max(f.upToMs, upToMs);
    else {
      // Bounded like the cache; dropping the oldest only matters for a ticket unused through a step back.
      if (this.#forgotten.size >= this.#maxEntries)
        this.#forgotten.delete(this.#forgotten.keys().next().value as string);
      // Kept on the monotonic clock: a ticket lives its hour on the lab clock, which a forward step
      // of the wall does not move, so a day of the (never-back) wall clock could end before it (the
      // red team: a step of 25 h with one request in it, then back, and a forgotten proof replayed).
      this.#forgotten.set(jti, { upToMs, keepUntilMs: this.#monotonic() + FORGOTTEN_KEEP_MS });
    }
  }

  /**
   * Drops pairs whose proofs are outside the window. Cheap form: from the oldest while they are
   * expired (entries are inserted roughly in expiry order). Full form, when the cache is full: a
   * walk over everything, at most once a second so that a full cache cannot make every call slow.
   */
  #sweep(now: number, full = false): void {
    const mono = this.#monotonic();
    if (mono - this.#lastForgottenSweep >= 1000) {
      this.#lastForgottenSweep = mono;
      for (const [jti, f] of this.#forgotten) if (mono > f.keepUntilMs) this.#forgotten.delete(jti);
    }
    if (!full) {
      for (const [key, entry] of this.#seen) {
        if (now <= entry.until) break;
        this.#forget(key, entry);
      }
      return;
    }
    if (now - this.#lastFullSweep < 1000) return;
    this.#lastFullSweep = now;
    for (const [key, entry] of this.#seen) if (now > entry.until) this.#forget(key, entry);
  }
}
