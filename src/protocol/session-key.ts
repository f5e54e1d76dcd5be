import {
  createCipheriv,
  createDecipheriv,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
  randomBytes,
} from 'node:crypto';
import { TrustedMsError } from '../errors.js';

/**
 * The per-session key of the trusted posture (docs/protocol.md, "The session key"). The client
 * sends an ephemeral X25519 public key with its login request; it is part of the challenge the user
 * signs, so a man in the middle who swaps it breaks the signature. After the signature checks out,
 * the security service answers its own ephemeral public key, and both sides derive
 *
 *   sessionKey = HKDF-SHA256(ikm = X25519(own private, peer public),
 *                            salt = UTF-8 of the challenge id,
 *                            info = "trusted-ms session-key v1", length 32)
 *
 * The security service then seals the session key into the ticket (`cnf.sk`) with a lab secret it
 * shares with the gateway, so the gateway can check proofs without keeping any per-session state.
 */

/** HKDF `info`: domain separation tag and version of the derivation. */
export const SESSION_KEY_INFO = 'trusted-ms session-key v1';
export const SESSION_KEY_BYTES = 32;
/** Length of a raw X25519 public key, and of its unpadded base64url form. */
export const EXCHANGE_KEY_BYTES = 32;
const EXCHANGE_KEY_RE = /^[A-Za-z0-9_-]{43}$/;
const CHALLENGE_ID_RE = /^[A-Za-z0-9_-]{16,128}$/;

const IV_BYTES = 12;
const TAG_BYTES = 16;
const SEALED_BYTES = IV_BYTES + SESSION_KEY_BYTES + TAG_BYTES;
const SEALED_RE = /^[A-Za-z0-9_-]{80}$/; // 60 bytes, unpadded base64url
const JTI_RE = /^[A-Za-z0-9_-]{16,128}$/;

function invalid(message: string): TrustedMsError {
  return new TrustedMsError('INVALID_INPUT', message);
}

/** A fresh X25519 key pair for one login; the public half as raw 32 bytes in base64url. */
export function newExchangeKeyPair(): { privateKey: KeyObject; publicKeyRaw: string } {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  const x = publicKey.export({ format: 'jwk' }).x;
  if (typeof x !== 'string') throw new TrustedMsError('INTERNAL', 'X25519 public key has no raw form');
  return { privateKey, publicKeyRaw: x };
}

/** The KeyObject of a raw X25519 public key in canonical unpadded base64url, or INVALID_INPUT. */
export function exchangePublicKeyFromRaw(raw: string): KeyObject {
  if (
    typeof raw !== 'string' ||
    !EXCHANGE_KEY_RE.test(raw) ||
    Buffer.from(raw, 'base64url').toString('base64url') !== raw
  ) {
    throw invalid('exchange public key is invalid: expected canonical base64url of 32 bytes');
  }
  try {
    return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: raw }, format: 'jwk' });
  } catch (cause) {
    throw new TrustedMsError('INVALID_INPUT', 'exchange public key is invalid', { cause });
  }
}

/**
 * The 32-byte session key both sides of a login derive. `ownPrivate` is one's own X25519 private
 * key, `peerPublicRaw` the other side's public key as sent, `challengeId` the id of the challenge the
 * user signed. A peer key of low order (the X25519 result is all zeros, so anyone could compute it)
 * is refused with INVALID_INPUT.
 */
export function deriveSessionKey(ownPrivate: KeyObject, peerPublicRaw: string, challengeId: string): Buffer {
  if (ownPrivate?.type !== 'private' || ownPrivate.asymmetricKeyType !== 'x25519') {
    throw invalid('session key derivation needs an X25519 private key');
  }
  if (typeof challengeId !== 'string' || !CHALLENGE_ID_RE.test(challengeId)) {
    throw invalid('challenge id is invalid: expected 16-128 base64url characters');
  }
  const peer = exchangePublicKeyFromRaw(peerPublicRaw);
  let shared: Buffer;
  try {
    shared = diffieHellman({ privateKey: ownPrivate, publicKey: peer });
  } catch (cause) {
    // OpenSSL itself refuses an all-zero X25519 result; the check below is for any other build.
    throw new TrustedMsError('INVALID_INPUT', 'exchange public key is invalid', { cause });
  }
  let acc = 0;
  for (const b of shared) acc |= b;
  if (shared.length !== EXCHANGE_KEY_BYTES || acc === 0) throw invalid('exchange public key is invalid');
  const key = hkdfSync(
    'sha256',
    shared,
    Buffer.from(challengeId, 'utf8'),
    SESSION_KEY_INFO,
    SESSION_KEY_BYTES,
  );
  shared.fill(0);
  return Buffer.from(key);
}

function checkSealKey(sealKey: Buffer): void {
  if (!Buffer.isBuffer(sealKey) || sealKey.length !== 32) throw invalid('seal key must be 32 bytes');
}

/**
 * Seals a session key for the ticket's `cnf.sk`: AES-256-GCM under the lab's 32-byte seal key, a
 * random 12-byte IV, the ticket id `jti` as additional data (a sealed key moved to another ticket
 * does not open), encoded as unpadded base64url of iv || ciphertext || tag (80 characters).
 */
export function sealSessionKey(sealKey: Buffer, sessionKey: Buffer, jti: string): string {
  checkSealKey(sealKey);
  if (!Buffer.isBuffer(sessionKey) || sessionKey.length !== SESSION_KEY_BYTES) {
    throw invalid('session key must be 32 bytes');
  }
  if (typeof jti !== 'string' || !JTI_RE.test(jti)) throw invalid('ticket id is invalid');
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', sealKey, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(jti, 'utf8'));
  const ct = Buffer.concat([cipher.update(sessionKey), cipher.final()]);
  return Buffer.concat([iv, ct, cipher.getAuthTag()]).toString('base64url');
}

/**
 * Opens a sealed session key. Any failure (wrong seal key, wrong `jti`, a changed byte, a bad
 * encoding) is the same generic TICKET_INVALID: the sealed key travels inside a ticket.
 */
export function openSessionKey(sealKey: Buffer, sealed: string, jti: string): Buffer {
  checkSealKey(sealKey);
  const fail = () => new TrustedMsError('TICKET_INVALID', 'ticket verification failed');
  if (typeof sealed !== 'string' || !SEALED_RE.test(sealed) || typeof jti !== 'string') throw fail();
  const bytes = Buffer.from(sealed, 'base64url');
  if (bytes.length !== SEALED_BYTES || bytes.toString('base64url') !== sealed) throw fail();
  try {
    const decipher = createDecipheriv('aes-256-gcm', sealKey, bytes.subarray(0, IV_BYTES), {
      authTagLength: TAG_BYTES,
    });
    decipher.setAAD(Buffer.from(jti, 'utf8'));
    decipher.setAuthTag(bytes.subarray(IV_BYTES + SESSION_KEY_BYTES));
    return Buffer.concat([
      decipher.update(bytes.subarray(IV_BYTES, IV_BYTES + SESSION_KEY_BYTES)),
      decipher.final(),
    ]);
  } catch {
    throw fail();
  }
}
