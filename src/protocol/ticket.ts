import { type KeyObject, sign, verify } from 'node:crypto';
import { type ErrorCode, TrustedMsError } from '../errors.js';
import { ACTIONS, type Action } from '../policy/types.js';
import { forwardOnlyClock } from './clock.js';

/**
 * Session tickets (docs/protocol.md, "The session ticket"): a compact JWS signed by the security
 * service with Ed25519, `base64url(header).base64url(payload).base64url(signature)`. Only EdDSA is
 * accepted; the verifier caches successful verifications by token until they expire, so the
 * per-request cost of a known ticket is a Map lookup.
 */

/**
 * Which login issued a ticket (its `posture` claim, named so on the wire): the paper's bearer
 * ticket, or a ticket bound to the session key agreed by the signed-challenge login (`cnf`).
 */
export type TicketKind = 'paper' | 'trusted';

export interface TicketClaims {
  v: 1;
  /** Issuer: the security service, e.g. `trusted-ms://lab-1234/security`. */
  iss: string;
  /** Audience: the lab the ticket is good for, e.g. `trusted-ms://lab-1234`. */
  aud: string;
  /** Subject: the user name. */
  sub: string;
  role: string;
  /** Database → allowed actions, as `permissionsOf()` gives them; `*` means every database. */
  perms: Record<string, Action[]>;
  /** Unix seconds. */
  iat: number;
  /** Unix seconds: the first second at which the ticket is no longer accepted. */
  exp: number;
  /** Ticket id, base64url, 16-128 characters. */
  jti: string;
  posture: TicketKind;
  /** Confirmation (trusted posture only, and required there): what binds the ticket to its holder. */
  cnf?: {
    /** RFC 7638 thumbprint of the user's public key. */
    jkt: string;
    /** The session key, sealed to the gateway (`sealSessionKey`). */
    sk: string;
  };
}

export interface TicketHeader {
  alg: 'EdDSA';
  typ: typeof TICKET_TYPE;
  kid: string;
}

export const TICKET_TYPE = 'tms-ticket+jwt';
/** The only signature algorithm tickets may use: an allow-list, never read from the token. */
export const TICKET_ALGORITHMS: ReadonlySet<string> = new Set(['EdDSA']);
/** Tokens longer than this are refused unread. */
export const MAX_TICKET_CHARS = 8192;

/**
 * A refusal of a ticket. `message` is generic; `reason` says what exactly failed, for the audit log
 * only: it is not part of `toJSON()`, so it never reaches a client.
 */
export class TicketError extends TrustedMsError {
  readonly reason: string;
  constructor(code: ErrorCode, message: string, reason: string) {
    super(code, message);
    this.reason = reason;
  }
}

const GENERIC = 'ticket verification failed';
const refuse = (reason: string) => new TicketError('TICKET_INVALID', GENERIC, reason);

const KID_RE = /^[A-Za-z0-9._-]{1,64}$/;
const URI_RE = /^[a-z0-9][a-z0-9.:/_-]{0,127}$/;
const USER_RE = /^[a-z][a-z0-9._-]{0,31}$/;
const ROLE_RE = /^[a-z][a-z0-9-]{0,31}$/;
const DATABASE_RE = /^(?:\*|[A-Za-z0-9][A-Za-z0-9._-]{0,63})$/;
const JTI_RE = /^[A-Za-z0-9_-]{16,128}$/;
const JKT_RE = /^[A-Za-z0-9_-]{43}$/;
const SEALED_RE = /^[A-Za-z0-9_-]{80}$/;
const B64URL_RE = /^[A-Za-z0-9_-]+$/;
const MAX_DATABASES = 256;
const CLAIM_KEYS = new Set([
  'v',
  'iss',
  'aud',
  'sub',
  'role',
  'perms',
  'iat',
  'exp',
  'jti',
  'posture',
  'cnf',
]);
const ACTION_SET: ReadonlySet<string> = new Set(ACTIONS);

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function isTime(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x > 0;
}

/**
 * Checks a claims object's shape and returns a fresh copy in canonical member order, `perms` with a
 * null prototype (so `perms.constructor` is undefined, not Object's) and frozen all through. Returns
 * a string naming the first problem instead when the shape is wrong.
 */
function checkClaims(x: unknown): TicketClaims | string {
  if (!isPlainObject(x)) return 'claims are not an object';
  for (const k of Object.keys(x)) if (!CLAIM_KEYS.has(k)) return `unknown claim ${k.slice(0, 32)}`;
  if (x.v !== 1) return 'v';
  const { iss, aud, sub, role, iat, exp, jti, posture, perms, cnf } = x;
  if (typeof iss !== 'string' || !URI_RE.test(iss)) return 'iss';
  if (typeof aud !== 'string' || !URI_RE.test(aud)) return 'aud';
  if (typeof sub !== 'string' || !USER_RE.test(sub)) return 'sub';
  if (typeof role !== 'string' || !ROLE_RE.test(role)) return 'role';
  if (!isTime(iat)) return 'iat';
  if (!isTime(exp) || exp <= iat) return 'exp';
  if (typeof jti !== 'string' || !JTI_RE.test(jti)) return 'jti';
  if (posture !== 'paper' && posture !== 'trusted') return 'posture';
  if (!isPlainObject(perms)) return 'perms';
  const dbs = Object.keys(perms);
  if (dbs.length > MAX_DATABASES) return 'perms';
  const outPerms: Record<string, Action[]> = Object.create(null);
  for (const db of dbs) {
    const actions = perms[db];
    if (!DATABASE_RE.test(db) || !Array.isArray(actions) || actions.length > ACTIONS.length) return 'perms';
    if (actions.some((a) => !ACTION_SET.has(a)) || new Set(actions).size !== actions.length) return 'perms';
    outPerms[db] = Object.freeze([...actions]) as Action[];
  }
  const out: TicketClaims = {
    v: 1,
    iss,
    aud,
    sub,
    role,
    perms: Object.freeze(outPerms),
    iat,
    exp,
    jti,
    posture,
  };
  if (posture === 'trusted') {
    // A trusted ticket without a binding would be a bearer ticket: refuse it rather than guess.
    if (!isPlainObject(cnf) || Object.keys(cnf).length !== 2) return 'cnf';
    if (typeof cnf.jkt !== 'string' || !JKT_RE.test(cnf.jkt)) return 'cnf';
    if (typeof cnf.sk !== 'string' || !SEALED_RE.test(cnf.sk)) return 'cnf';
    out.cnf = Object.freeze({ jkt: cnf.jkt, sk: cnf.sk });
  } else if (cnf !== undefined) {
    return 'cnf';
  }
  return Object.freeze(out);
}

function encodeJson(x: unknown): string {
  return Buffer.from(JSON.stringify(x), 'utf8').toString('base64url');
}

/** The JSON a canonical unpadded base64url segment holds, or undefined. */
function decodeSegment(seg: string): unknown {
  if (!B64URL_RE.test(seg)) return undefined;
  const bytes = Buffer.from(seg, 'base64url');
  if (bytes.toString('base64url') !== seg) return undefined;
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
}

/**
 * Signs a ticket with the security service's Ed25519 key. The claims are checked first
 * (INVALID_INPUT when their shape is wrong, e.g. a trusted ticket without `cnf`).
 */
export function issueTicket(key: { kid: string; privateKey: KeyObject }, claims: TicketClaims): string {
  if (typeof key?.kid !== 'string' || !KID_RE.test(key.kid)) {
    throw new TrustedMsError('INVALID_INPUT', `ticket key id must match ${KID_RE.source}`);
  }
  if (key.privateKey?.type !== 'private' || key.privateKey.asymmetricKeyType !== 'ed25519') {
    throw new TrustedMsError('KEY_INVALID', 'tickets are signed with an Ed25519 private key');
  }
  const checked = checkClaims(claims);
  if (typeof checked === 'string') {
    throw new TrustedMsError('INVALID_INPUT', `ticket claims are invalid: ${checked}`);
  }
  const header: TicketHeader = { alg: 'EdDSA', typ: TICKET_TYPE, kid: key.kid };
  const signingInput = `${encodeJson(header)}.${encodeJson(checked)}`;
  const sig = sign(null, Buffer.from(signingInput, 'ascii'), key.privateKey);
  return `${signingInput}.${sig.toString('base64url')}`;
}

/** Splits and decodes a token without checking its signature; a TicketError when malformed. */
function parseToken(token: unknown): {
  header: TicketHeader;
  claims: TicketClaims;
  signingInput: string;
  signature: Buffer;
} {
  if (token === undefined || token === null || token === '') {
    throw new TicketError('TICKET_MISSING', 'no ticket', 'missing');
  }
  if (typeof token !== 'string') throw refuse('not a string');
  if (token.length > MAX_TICKET_CHARS) throw refuse('too long');
  const parts = token.split('.');
  if (parts.length !== 3) throw refuse('not three parts');
  const [h, p, s] = parts as [string, string, string];
  const header = decodeSegment(h);
  if (!isPlainObject(header) || Object.keys(header).length !== 3) throw refuse('header');
  if (typeof header.alg !== 'string' || !TICKET_ALGORITHMS.has(header.alg))
    throw refuse('algorithm not allowed');
  if (header.typ !== TICKET_TYPE) throw refuse('typ');
  if (typeof header.kid !== 'string' || !KID_RE.test(header.kid)) throw refuse('kid');
  if (!B64URL_RE.test(s)) throw refuse('signature encoding');
  const signature = Buffer.from(s, 'base64url');
  if (signature.length !== 64 || signature.toString('base64url') !== s) throw refuse('signature encoding');
  const claims = checkClaims(decodeSegment(p));
  if (typeof claims === 'string') throw refuse(`claims: ${claims}`);
  return {
    header: { alg: 'EdDSA', typ: TICKET_TYPE, kid: header.kid },
    claims,
    signingInput: `${h}.${p}`,
    signature,
  };
}

/**
 * A ticket's header and claims **without** checking anything but its form: for display only (for
 * example the expiry `user login` prints). Never base a decision on it.
 */
export function decodeTicketUnverified(token: string): { header: TicketHeader; claims: TicketClaims } {
  const { header, claims } = parseToken(token);
  return { header, claims };
}

export interface TicketVerifierOptions {
  /** Public keys by `kid`: a map, or a function called on each cache miss (key rotation). */
  keys: ReadonlyMap<string, KeyObject> | (() => ReadonlyMap<string, KeyObject>);
  /** The `iss` a ticket must carry. */
  issuer: string;
  /** When given, the `aud` a ticket must carry. */
  audience?: string;
  /** When given, the `posture` a ticket must carry (a trusted gateway refuses bearer tickets). */
  posture?: TicketKind;
  /**
   * The clock in milliseconds: the part's lab clock (`LabClock`, src/protocol/lab-clock.ts), or
   * `Date.now` by default. Read through `forwardOnlyClock`: whatever clock is given, a step back does
   * not make an expired ticket valid again (docs/faults.md).
   */
  now?: () => number;
  /** Most verified tickets kept; the oldest is dropped first. 10,000 by default. */
  maxEntries?: number;
  /** Clock skew tolerated on `exp` and `iat`, in seconds; 0 by default. */
  leewaySeconds?: number;
  /**
   * Clock skew tolerated on `iat` only, in seconds; `leewaySeconds` by default. A part on the lab
   * clock is behind the security service by the delay it took the time with (IAT_LEEWAY_SECONDS).
   */
  issuedAtLeewaySeconds?: number;
}

/**
 * Verifies tickets and remembers the good ones until they expire. Checks, in this order: form
 * (size, three canonical base64url parts, header with `alg` exactly `EdDSA`, `typ`, `kid`, claims
 * shape), key by `kid`, Ed25519 signature (all TICKET_INVALID, one generic message), then issuer,
 * audience and posture (TICKET_INVALID), `iat` not in the future, and expiry (TICKET_EXPIRED).
 * A cached ticket is still refused once it expires. Removing a key does not forget tickets already
 * verified with it: call `clear()` when rotating keys out.
 */
export class TicketVerifier {
  readonly #keys: () => ReadonlyMap<string, KeyObject>;
  readonly #issuer: string;
  readonly #audience: string | undefined;
  readonly #posture: TicketKind | undefined;
  readonly #now: () => number;
  readonly #maxEntries: number;
  readonly #leewayMs: number;
  readonly #iatLeewayMs: number;
  /** token → its claims and the millisecond from which it is expired; insertion order = age. */
  readonly #cache = new Map<string, { claims: TicketClaims; expiredAtMs: number }>();

  constructor(opts: TicketVerifierOptions) {
    const keys = opts.keys;
    this.#keys = typeof keys === 'function' ? keys : () => keys;
    this.#issuer = opts.issuer;
    this.#audience = opts.audience;
    this.#posture = opts.posture;
    this.#now = forwardOnlyClock(opts.now ?? Date.now);
    this.#maxEntries = opts.maxEntries ?? 10_000;
    this.#leewayMs = (opts.leewaySeconds ?? 0) * 1000;
    this.#iatLeewayMs = (opts.issuedAtLeewaySeconds ?? opts.leewaySeconds ?? 0) * 1000;
    if (!Number.isSafeInteger(this.#maxEntries) || this.#maxEntries < 0) {
      throw new TrustedMsError('INVALID_INPUT', 'maxEntries must be a whole number ≥ 0');
    }
    if (!Number.isFinite(this.#leewayMs) || this.#leewayMs < 0) {
      throw new TrustedMsError('INVALID_INPUT', 'leewaySeconds must be ≥ 0');
    }
    if (!Number.isFinite(this.#iatLeewayMs) || this.#iatLeewayMs < 0) {
      throw new TrustedMsError('INVALID_INPUT', 'issuedAtLeewaySeconds must be ≥ 0');
    }
  }

  /** Number of cached verified tickets. */
  get size(): number {
    return this.#cache.size;
  }

  /** Forgets every cached verification (e.g. after removing a key). */
  clear(): void {
    this.#cache.clear();
  }

  /** The ticket's claims (frozen) when it is valid now; a TicketError otherwise. */
  verify(token: string): TicketClaims {
    const hit = typeof token === 'string' ? this.#cache.get(token) : undefined;
    if (hit !== undefined) {
      if (this.#now() < hit.expiredAtMs) return hit.claims;
      this.#cache.delete(token);
      throw new TicketError('TICKET_EXPIRED', 'ticket expired', 'expired');
    }
    const { header, claims, signingInput, signature } = parseToken(token);
    const key = this.#keys().get(header.kid);
    if (key === undefined) throw refuse('unknown kid');
    if (key.type !== 'public' || key.asymmetricKeyType !== 'ed25519')
      throw refuse('key is not an Ed25519 public key');
    let ok = false;
    try {
      ok = verify(null, Buffer.from(signingInput, 'ascii'), key, signature);
    } catch {
      ok = false;
    }
    if (!ok) throw refuse('bad signature');
    if (claims.iss !== this.#issuer) throw refuse('issuer');
    if (this.#audience !== undefined && claims.aud !== this.#audience) throw refuse('audience');
    if (this.#posture !== undefined && claims.posture !== this.#posture) throw refuse('posture');
    const nowMs = this.#now();
    if (!(nowMs + this.#iatLeewayMs >= claims.iat * 1000)) throw refuse('issued in the future');
    const expiredAtMs = claims.exp * 1000 + this.#leewayMs;
    if (!(nowMs < expiredAtMs)) throw new TicketError('TICKET_EXPIRED', 'ticket expired', 'expired');
    if (this.#maxEntries > 0) {
      while (this.#cache.size >= this.#maxEntries) {
        const oldest = this.#cache.keys().next().value as string;
        this.#cache.delete(oldest);
      }
      this.#cache.set(token, { claims, expiredAtMs });
    }
    return claims;
  }
}
