import { constants, type KeyObject, sign, verify } from 'node:crypto';
import { TrustedMsError } from '../errors.js';

/**
 * The two signature algorithms users may sign with, named as in JOSE. RSA keys sign with PSS
 * (SHA-256, MGF1-SHA-256, salt length 32) rather than PKCS#1 v1.5, and must be 2048 bits or more.
 */
export type SignatureAlgorithm = 'EdDSA' | 'PS256';
export const SIGNATURE_ALGORITHMS: readonly SignatureAlgorithm[] = ['EdDSA', 'PS256'];
export const MIN_RSA_BITS = 2048;

/** The algorithm a key signs with, or a KEY_TYPE_UNSUPPORTED error for any other kind of key. */
export function algorithmForKey(key: KeyObject): SignatureAlgorithm {
  if (key.asymmetricKeyType === 'ed25519') return 'EdDSA';
  if (key.asymmetricKeyType === 'rsa') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS) {
      throw new TrustedMsError('KEY_TYPE_UNSUPPORTED', `RSA keys must have at least ${MIN_RSA_BITS} bits`);
    }
    return 'PS256';
  }
  throw new TrustedMsError(
    'KEY_TYPE_UNSUPPORTED',
    `unsupported key type ${key.asymmetricKeyType ?? key.type}: use ed25519 or rsa`,
  );
}

const PSS = { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 } as const;

export function signBytes(privateKey: KeyObject, data: Uint8Array): Buffer {
  const alg = algorithmForKey(privateKey);
  return alg === 'EdDSA' ? sign(null, data, privateKey) : sign('sha256', data, { key: privateKey, ...PSS });
}

/**
 * Verifies a signature. The algorithm comes from the registered key, never from the message, and
 * must be in `allowed`; every failure is the same generic SIGNATURE_INVALID so that callers learn
 * nothing about why.
 */
export function verifyBytes(
  publicKey: KeyObject,
  data: Uint8Array,
  signature: Uint8Array,
  allowed: readonly SignatureAlgorithm[] = SIGNATURE_ALGORITHMS,
): void {
  const alg = algorithmForKey(publicKey);
  if (!allowed.includes(alg)) {
    throw new TrustedMsError('ALGORITHM_NOT_ALLOWED', `signature algorithm ${alg} is not allowed here`);
  }
  let ok = false;
  try {
    ok =
      alg === 'EdDSA'
        ? verify(null, data, publicKey, signature)
        : verify('sha256', data, { key: publicKey, ...PSS }, signature);
  } catch {
    ok = false;
  }
  if (!ok) throw new TrustedMsError('SIGNATURE_INVALID', 'signature verification failed');
}
