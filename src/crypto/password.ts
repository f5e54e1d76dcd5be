import { randomBytes, type ScryptOptions, scrypt, timingSafeEqual } from 'node:crypto';
import bcrypt from 'bcryptjs';
import { TrustedMsError } from '../errors.js';

/**
 * Password hashes are self-describing strings, so parameters can be raised later without breaking
 * stored hashes: `$scrypt$ln=14,r=8,p=1$<salt>$<hash>` (PHC-style, base64 without padding).
 * Measured here: N=2^14, r=8, p=1 costs ~56-60 ms per hash (see ENVIRONMENT.md).
 *
 * bcrypt hashes imported from an Apache htpasswd (`$2y$`, `$2b$`, `$2a$`) verify as they are and are
 * flagged `needsUpgrade`, so the caller rehashes them with scrypt at the next successful login.
 * Note bcrypt only uses the first 72 bytes of a password; Apache's `htpasswd -B` does the same.
 */

export interface ScryptParams {
  /** log2 of the cost N. */
  ln: number;
  r: number;
  p: number;
}

export const SCRYPT_PARAMS: Readonly<ScryptParams> = { ln: 14, r: 8, p: 1 };
const SALT_BYTES = 16;
const HASH_BYTES = 32;
/** Longer passwords are refused: hashing a megabyte on every login is a free denial of service. */
export const MAX_PASSWORD_BYTES = 1024;

/** What parameters read back from a stored hash may be, so a doctored store cannot stall logins. */
const LIMITS = { ln: [10, 20], r: [1, 32], p: [1, 16], salt: [8, 64], hash: [16, 64] } as const;

export type HashFormat = 'scrypt' | 'bcrypt' | 'apr1' | 'sha1' | 'crypt' | 'plain' | 'unknown';

export interface VerifyResult {
  ok: boolean;
  /** The password was right but the hash is not the current scheme and parameters: rehash it. */
  needsUpgrade: boolean;
}

const SCRYPT_RE = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,3}),p=(\d{1,3})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;
const BCRYPT_RE = /^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$/;

/** Which scheme a stored hash (or an htpasswd field) uses, from its form alone. */
export function classifyHash(s: string): HashFormat {
  if (s === '') return 'unknown';
  if (s.startsWith('$scrypt$')) return SCRYPT_RE.test(s) ? 'scrypt' : 'unknown';
  if (/^\$2[abxy]\$/.test(s)) return BCRYPT_RE.test(s) ? 'bcrypt' : 'unknown';
  if (s.startsWith('$apr1$')) return 'apr1';
  if (s.startsWith('{SHA}')) return 'sha1';
  // crypt(3): traditional DES (13 characters, what `htpasswd -d` writes), MD5, SHA-256, SHA-512.
  if (/^[./0-9A-Za-z]{13}$/.test(s) || /^\$(1|5|6)\$/.test(s)) return 'crypt';
  if (s.startsWith('$')) return 'unknown';
  return 'plain';
}

function checkPassword(pw: string): void {
  if (typeof pw !== 'string' || pw.length === 0) {
    throw new TrustedMsError('PASSWORD_REQUIRED', 'a password is required', {
      actions: ['give a non-empty password'],
    });
  }
  if (Buffer.byteLength(pw, 'utf8') > MAX_PASSWORD_BYTES) {
    throw new TrustedMsError('INVALID_INPUT', `passwords are limited to ${MAX_PASSWORD_BYTES} bytes`, {
      actions: ['use a shorter password (or a passphrase under the limit)'],
    });
  }
}

function b64(buf: Buffer): string {
  return buf.toString('base64').replace(/=+$/, '');
}

function scryptAsync(pw: string, salt: Buffer, length: number, params: ScryptParams): Promise<Buffer> {
  const N = 2 ** params.ln;
  const options: ScryptOptions = {
    N,
    r: params.r,
    p: params.p,
    maxmem: 128 * N * params.r * 2 + 1024 * 1024,
  };
  return new Promise((resolve, reject) => {
    scrypt(pw, salt, length, options, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** A new scrypt hash of `pw` with the current parameters and a fresh 16-byte salt. */
export async function hashPassword(pw: string, params: ScryptParams = SCRYPT_PARAMS): Promise<string> {
  checkPassword(pw);
  const salt = randomBytes(SALT_BYTES);
  const hash = await scryptAsync(pw, salt, HASH_BYTES, params);
  return `$scrypt$ln=${params.ln},r=${params.r},p=${params.p}$${b64(salt)}$${b64(hash)}`;
}

/**
 * A well-formed hash with the current parameters that no password matches. Verifying against it
 * costs what a real verification costs: used for unknown users so timing does not reveal existence.
 */
export function dummyHash(): string {
  const { ln, r, p } = SCRYPT_PARAMS;
  return `$scrypt$ln=${ln},r=${r},p=${p}$${b64(randomBytes(SALT_BYTES))}$${b64(randomBytes(HASH_BYTES))}`;
}

function within(v: number, [lo, hi]: readonly [number, number]): boolean {
  return v >= lo && v <= hi;
}

async function verifyScrypt(pw: string, stored: string): Promise<VerifyResult> {
  const m = SCRYPT_RE.exec(stored);
  if (!m) return { ok: false, needsUpgrade: false };
  const params: ScryptParams = { ln: Number(m[1]), r: Number(m[2]), p: Number(m[3]) };
  const salt = Buffer.from(m[4]!, 'base64');
  const expected = Buffer.from(m[5]!, 'base64');
  if (
    !within(params.ln, LIMITS.ln) ||
    !within(params.r, LIMITS.r) ||
    !within(params.p, LIMITS.p) ||
    !within(salt.length, LIMITS.salt) ||
    !within(expected.length, LIMITS.hash)
  ) {
    return { ok: false, needsUpgrade: false };
  }
  const actual = await scryptAsync(pw, salt, expected.length, params);
  const ok = timingSafeEqual(actual, expected);
  const weaker =
    params.ln < SCRYPT_PARAMS.ln ||
    params.r < SCRYPT_PARAMS.r ||
    params.p < SCRYPT_PARAMS.p ||
    salt.length < SALT_BYTES ||
    expected.length < HASH_BYTES;
  return { ok, needsUpgrade: ok && weaker };
}

/**
 * Checks `pw` against a stored hash. Unknown or unsupported formats never match. Throws only for
 * a missing or oversized password (PASSWORD_REQUIRED / INVALID_INPUT), never because of the hash.
 */
export async function verifyPassword(pw: string, stored: string): Promise<VerifyResult> {
  checkPassword(pw);
  switch (classifyHash(stored)) {
    case 'scrypt':
      return verifyScrypt(pw, stored);
    case 'bcrypt': {
      // bcryptjs 3 reads $2a$, $2b$ and $2y$ alike ($2y$ is PHP's and Apache's name for $2b$).
      const ok = await bcrypt.compare(pw, stored);
      return { ok, needsUpgrade: ok };
    }
    default:
      return { ok: false, needsUpgrade: false };
  }
}

/** What a lab's bcrypt hashes cost, from the `$2y$NN$` of its imported records; clamped to 4-12. */
export function bcryptCostOf(stored: string): number | undefined {
  if (classifyHash(stored) !== 'bcrypt') return undefined;
  return Math.min(12, Math.max(4, Number(stored.slice(4, 6))));
}

const BCRYPT_ALPHABET = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** A well-formed bcrypt hash at `cost` that no password matches: a bcrypt check's cost for nobody. */
export function dummyBcryptHash(cost: number): string {
  const chars = Array.from(randomBytes(53), (b) => BCRYPT_ALPHABET[b & 63]).join('');
  return `$2b$${String(cost).padStart(2, '0')}$${chars}`;
}

/**
 * Checks `pw` against `stored` (undefined: no such user) so that the work done does not depend on
 * which: always one scrypt at the current parameters and, when the lab holds imported bcrypt
 * hashes (`bcryptCost`: their cost), one bcrypt at that cost, the real hash where the record has
 * one and a dummy otherwise, both started together in every case. Measured here before: an
 * imported bcrypt user answered a wrong password in ~4 ms and an unknown user in ~38 ms.
 */
export async function verifyPasswordUniformly(
  pw: string,
  stored: string | undefined,
  bcryptCost: number | undefined,
): Promise<VerifyResult> {
  checkPassword(pw);
  const kind = stored === undefined ? 'unknown' : classifyHash(stored);
  const scryptTarget = kind === 'scrypt' ? (stored as string) : dummyHash();
  const cost = kind === 'bcrypt' ? undefined : bcryptCost;
  const bcryptTarget =
    kind === 'bcrypt' ? (stored as string) : cost !== undefined ? dummyBcryptHash(cost) : undefined;
  const [s, b] = await Promise.all([
    verifyScrypt(pw, scryptTarget),
    bcryptTarget === undefined ? false : bcrypt.compare(pw, bcryptTarget),
  ]);
  if (kind === 'scrypt') return s;
  if (kind === 'bcrypt') return { ok: b, needsUpgrade: b };
  return { ok: false, needsUpgrade: false };
}
