import { type KeyObject, randomBytes } from 'node:crypto';
import { type SignatureAlgorithm, signBytes, verifyBytes } from '../crypto/signature.js';
import { TrustedMsError } from '../errors.js';

/**
 * A one-time login challenge (trusted posture), and the exact bytes a user signs to answer it.
 * The format is specified in docs/protocol.md; this file is its reference implementation.
 */
export interface Challenge {
  /** Opaque challenge id, base64url, 16-128 characters. */
  id: string;
  /** Random nonce, canonical base64url of at least 16 bytes. */
  nonce: string;
  /** The user the challenge was issued to. */
  user: string;
  /** The verifier the signature is meant for, e.g. `trusted-ms://lab-1234/security`. */
  audience: string;
  /**
   * The client's ephemeral X25519 public key for this login: the raw 32 bytes, canonical unpadded
   * base64url (43 characters). Signing it binds the session key exchange to the user's key, so
   * whoever swaps it on the way breaks the signature.
   */
  clientKey: string;
  /** Unix seconds: the first second at which the challenge is no longer accepted. */
  expiresAt: number;
}

export const CHALLENGE_FORMAT_VERSION = 1;

/** The first line of the signed bytes: domain separation tag and format version. */
export const CHALLENGE_TAG = `trusted-ms login-challenge v${CHALLENGE_FORMAT_VERSION}`;

/** Keys of the `key=value` lines, in their one allowed order. */
export const CHALLENGE_FIELD_KEYS = ['id', 'nonce', 'user', 'audience', 'client-key', 'expires-at'] as const;

/** Longer than any valid encoding (about 540 bytes at most); anything beyond is refused unread. */
const MAX_ENCODED_BYTES = 1024;

const ID_RE = /^[A-Za-z0-9_-]{16,128}$/;
const USER_RE = /^[a-z][a-z0-9._-]{0,31}$/;
const AUDIENCE_RE = /^[a-z0-9][a-z0-9.:/_-]{0,127}$/;
const EXPIRES_AT_TEXT_RE = /^[1-9][0-9]{0,15}$/;
const CLIENT_KEY_RE = /^[A-Za-z0-9_-]{43}$/;
const MIN_NONCE_BYTES = 16;
/** Length of an X25519 public key (RFC 7748). */
export const CLIENT_KEY_BYTES = 32;

function invalid(message: string): TrustedMsError {
  return new TrustedMsError('INVALID_INPUT', message);
}

function checkString(name: string, value: unknown, re: RegExp, rule: string): string {
  if (typeof value !== 'string' || !re.test(value)) {
    throw invalid(`challenge field ${name} is invalid: ${rule}`);
  }
  return value;
}

/**
 * Checks every field against its grammar. The grammars exclude newlines, `=` and anything outside
 * printable ASCII, so no value can add, end or split a line of the encoding. Messages name the
 * field and the rule, never the value.
 */
export function validateChallenge(c: unknown): Challenge {
  if (typeof c !== 'object' || c === null) throw invalid('challenge must be an object');
  const o = c as Record<string, unknown>;
  const id = checkString('id', o.id, ID_RE, 'expected 16-128 base64url characters');
  const nonceRule = `expected canonical base64url of at least ${MIN_NONCE_BYTES} bytes, at most 128 characters`;
  const nonce = checkString('nonce', o.nonce, ID_RE, nonceRule);
  const decoded = Buffer.from(nonce, 'base64url');
  if (decoded.length < MIN_NONCE_BYTES || decoded.toString('base64url') !== nonce) {
    throw invalid(`challenge field nonce is invalid: ${nonceRule}`);
  }
  const user = checkString('user', o.user, USER_RE, `expected ${USER_RE.source}`);
  const audience = checkString('audience', o.audience, AUDIENCE_RE, `expected ${AUDIENCE_RE.source}`);
  const keyRule = `expected canonical base64url of exactly ${CLIENT_KEY_BYTES} bytes (43 characters)`;
  const clientKey = checkString('clientKey', o.clientKey, CLIENT_KEY_RE, keyRule);
  if (Buffer.from(clientKey, 'base64url').toString('base64url') !== clientKey) {
    throw invalid(`challenge field clientKey is invalid: ${keyRule}`);
  }
  const expiresAt = o.expiresAt;
  if (typeof expiresAt !== 'number' || !Number.isSafeInteger(expiresAt) || expiresAt <= 0) {
    throw invalid('challenge field expiresAt is invalid: expected a positive safe integer (unix seconds)');
  }
  return { id, nonce, user, audience, clientKey, expiresAt };
}

/**
 * The canonical bytes a user signs for a challenge (format v1): UTF-8 (in fact ASCII) text,
 *
 * ```
 * trusted-ms login-challenge v1\n
 * id=<id>\n
 * nonce=<nonce>\n
 * user=<user>\n
 * audience=<audience>\n
 * client-key=<clientKey>\n
 * expires-at=<expiresAt in decimal>\n
 * ```
 *
 * with nothing before or after. Invalid fields are refused with INVALID_INPUT before encoding.
 */
export function challengeSigningBytes(c: Challenge): Buffer {
  const v = validateChallenge(c);
  const values = [v.id, v.nonce, v.user, v.audience, v.clientKey, String(v.expiresAt)];
  const lines = [CHALLENGE_TAG, ...CHALLENGE_FIELD_KEYS.map((key, i) => `${key}=${values[i]}`)];
  return Buffer.from(`${lines.join('\n')}\n`, 'utf8');
}

/** The strict inverse of `challengeSigningBytes`: any other byte string is INVALID_INPUT. */
export function parseChallengeSigningBytes(buf: Uint8Array): Challenge {
  if (!(buf instanceof Uint8Array)) throw invalid('challenge bytes must be a byte array');
  if (buf.length > MAX_ENCODED_BYTES) throw invalid('challenge bytes are too long');
  for (const b of buf) {
    if (b !== 0x0a && (b < 0x20 || b > 0x7e)) throw invalid('challenge bytes must be printable ASCII lines');
  }
  const text = Buffer.from(buf).toString('latin1');
  if (!text.endsWith('\n')) throw invalid('challenge bytes must end with a newline');
  const lines = text.slice(0, -1).split('\n');
  if (lines[0] !== CHALLENGE_TAG) {
    throw invalid(
      lines[0]?.startsWith('trusted-ms login-challenge ')
        ? 'unsupported challenge format version'
        : 'not a trusted-ms login challenge',
    );
  }
  if (lines.length !== CHALLENGE_FIELD_KEYS.length + 1) {
    throw invalid(`challenge bytes must have exactly ${CHALLENGE_FIELD_KEYS.length + 1} lines`);
  }
  const values = CHALLENGE_FIELD_KEYS.map((key, i) => {
    const line = lines[i + 1]!;
    if (!line.startsWith(`${key}=`)) throw invalid(`challenge line ${i + 2} must be the ${key} field`);
    return line.slice(key.length + 1);
  });
  const [id, nonce, user, audience, clientKey, expiresText] = values as [
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  if (!EXPIRES_AT_TEXT_RE.test(expiresText)) {
    throw invalid('challenge field expires-at is invalid: expected a decimal integer without leading zeros');
  }
  const challenge = validateChallenge({
    id,
    nonce,
    user,
    audience,
    clientKey,
    expiresAt: Number(expiresText),
  });
  // Belt and braces: only the canonical encoding of a challenge parses.
  if (!challengeSigningBytes(challenge).equals(buf)) throw invalid('challenge bytes are not canonical');
  return challenge;
}

/** Signs the challenge's canonical bytes: Ed25519, or RSA-PSS/SHA-256 (salt 32) for RSA ≥ 2048. */
export function signChallenge(privateKey: KeyObject, c: Challenge): Buffer {
  if (privateKey.type !== 'private') throw new TrustedMsError('KEY_INVALID', 'signing needs a private key');
  return signBytes(privateKey, challengeSigningBytes(c));
}

export interface VerifyChallengeOptions {
  /** Clock in milliseconds since the epoch; `Date.now` by default. */
  now?: () => number;
  /** Algorithms accepted here; both by default. */
  allowed?: readonly SignatureAlgorithm[];
  /** The verifier's own audience; when given, the challenge must carry exactly it. */
  expectedAudience?: string;
  /** The user the caller is logging in; when given, the challenge must name exactly it. */
  expectedUser?: string;
}

/**
 * Checks a signed answer to a challenge, in this order: the challenge's fields (INVALID_INPUT),
 * the key's algorithm against the allow-list (ALGORITHM_NOT_ALLOWED), the signature
 * (SIGNATURE_INVALID, generic), expiry (CHALLENGE_EXPIRED), then audience and user
 * (AUDIENCE_MISMATCH). Returns normally only when all pass. Claims are judged only after the
 * signature, so a caller without the key learns nothing about them.
 */
export function verifyChallengeSignature(
  publicKey: KeyObject,
  c: Challenge,
  signature: Uint8Array,
  opts: VerifyChallengeOptions = {},
): void {
  const bytes = challengeSigningBytes(c);
  if (!(signature instanceof Uint8Array)) {
    throw new TrustedMsError('SIGNATURE_INVALID', 'signature verification failed');
  }
  verifyBytes(publicKey, bytes, signature, opts.allowed);
  const nowMs = (opts.now ?? Date.now)();
  if (!Number.isFinite(nowMs) || nowMs >= c.expiresAt * 1000) {
    throw new TrustedMsError('CHALLENGE_EXPIRED', 'challenge expired', {
      actions: ['ask for a new challenge and sign it'],
    });
  }
  if (opts.expectedAudience !== undefined && c.audience !== opts.expectedAudience) {
    throw new TrustedMsError('AUDIENCE_MISMATCH', 'challenge was issued for another audience');
  }
  if (opts.expectedUser !== undefined && c.user !== opts.expectedUser) {
    throw new TrustedMsError('AUDIENCE_MISMATCH', 'challenge was issued to another user');
  }
}

/** Longest signature on the wire: an RSA-8192 signature is 1366 base64url characters. */
const MAX_WIRE_SIGNATURE_CHARS = 2048;
const WIRE_SIGNATURE_RE = /^[A-Za-z0-9_-]+$/;

/** A signature as sent to `POST /v1/auth/verify`: base64url without padding (RFC 4648 section 5). */
export function signatureToWire(signature: Uint8Array): string {
  return Buffer.from(signature).toString('base64url');
}

/**
 * The signature bytes from their wire form. Only canonical unpadded base64url is accepted (no `=`,
 * `+`, `/`, whitespace or stray bits); anything else is INVALID_INPUT.
 */
export function signatureFromWire(text: string): Buffer {
  if (typeof text !== 'string' || text.length > MAX_WIRE_SIGNATURE_CHARS || !WIRE_SIGNATURE_RE.test(text)) {
    throw invalid('signature must be unpadded base64url');
  }
  const bytes = Buffer.from(text, 'base64url');
  if (bytes.toString('base64url') !== text) throw invalid('signature must be unpadded base64url');
  return bytes;
}

/**
 * A fresh challenge: random 16-byte id and 32-byte nonce (base64url), carrying the client's
 * ephemeral X25519 public key as sent (`clientKey`, see `newExchangeKeyPair`), expiring `ttlSeconds`
 * after `now()` (milliseconds, `Date.now` by default), rounded down to the second.
 */
export function newChallenge(
  user: string,
  audience: string,
  clientKey: string,
  ttlSeconds: number,
  now: () => number = Date.now,
): Challenge {
  if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds <= 0) {
    throw invalid('challenge ttl is invalid: expected a positive whole number of seconds');
  }
  return validateChallenge({
    id: randomBytes(16).toString('base64url'),
    nonce: randomBytes(32).toString('base64url'),
    user,
    audience,
    clientKey,
    expiresAt: Math.floor(now() / 1000) + ttlSeconds,
  });
}
