import { createHash, createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { TrustedMsError } from '../errors.js';

/** The members RFC 7638 §3.2 requires per key type, already in lexicographic order. */
const REQUIRED_MEMBERS: Record<string, readonly (keyof JsonWebKey)[]> = {
  OKP: ['crv', 'kty', 'x'],
  RSA: ['e', 'kty', 'n'],
  EC: ['crv', 'kty', 'x', 'y'],
};

/**
 * RFC 7638 JWK thumbprint of a public key: SHA-256 over the JSON of the required members only, in
 * lexicographic order and without whitespace, encoded base64url without padding. A private key is
 * reduced to its public half first, so the thumbprint of a key pair is the same from either side.
 */
export function jwkThumbprint(publicKey: KeyObject): string {
  if (publicKey.type === 'secret') {
    throw new TrustedMsError('KEY_TYPE_UNSUPPORTED', 'a secret key has no JWK thumbprint');
  }
  const key = publicKey.type === 'private' ? createPublicKey(publicKey) : publicKey;
  let jwk: JsonWebKey;
  try {
    jwk = key.export({ format: 'jwk' });
  } catch (cause) {
    throw new TrustedMsError(
      'KEY_TYPE_UNSUPPORTED',
      `unsupported key type ${key.asymmetricKeyType ?? 'unknown'}: no JWK form`,
      { cause },
    );
  }
  const members = typeof jwk.kty === 'string' ? REQUIRED_MEMBERS[jwk.kty] : undefined;
  if (!members) {
    throw new TrustedMsError('KEY_TYPE_UNSUPPORTED', `unsupported JWK key type ${String(jwk.kty)}`);
  }
  const canonical: Record<string, unknown> = {};
  for (const name of members) {
    if (typeof jwk[name] !== 'string') {
      throw new TrustedMsError('KEY_INVALID', `the key's JWK lacks the member "${name}"`);
    }
    canonical[name] = jwk[name];
  }
  // Member values are base64url strings and fixed names: JSON.stringify needs no escaping here.
  return createHash('sha256').update(JSON.stringify(canonical)).digest('base64url');
}
