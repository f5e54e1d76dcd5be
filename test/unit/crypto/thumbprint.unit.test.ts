import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { jwkThumbprint } from '../../../src/crypto/thumbprint.js';

// RFC 7638 §3.1: the example RSA key and its SHA-256 thumbprint.
const RFC7638_RSA = {
  kty: 'RSA',
  n:
    '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV' +
    '4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0z' +
    'gdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csF' +
    'Cur-kEgU8awapJzKnqDKgw',
  e: 'AQAB',
  alg: 'RS256',
  kid: '2011-04-29',
};
const RFC7638_THUMBPRINT = 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs';

// RFC 8037 Appendix A.2 / A.3: the Ed25519 public key and its thumbprint.
const RFC8037_OKP = { kty: 'OKP', crv: 'Ed25519', x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo' };
const RFC8037_THUMBPRINT = 'kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k';

describe('jwkThumbprint', () => {
  it('matches the RFC 7638 §3.1 RSA example', () => {
    const key = createPublicKey({ key: RFC7638_RSA, format: 'jwk' });
    expect(jwkThumbprint(key)).toBe(RFC7638_THUMBPRINT);
  });

  it('matches the RFC 8037 A.3 Ed25519 example', () => {
    const key = createPublicKey({ key: RFC8037_OKP, format: 'jwk' });
    expect(jwkThumbprint(key)).toBe(RFC8037_THUMBPRINT);
  });

  it('is base64url of 32 bytes without padding, and the same from the private half', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const t = jwkThumbprint(publicKey);
    expect(t).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(jwkThumbprint(privateKey)).toBe(t);
  });

  it('differs between keys', () => {
    const a = generateKeyPairSync('ed25519').publicKey;
    const b = generateKeyPairSync('ed25519').publicKey;
    expect(jwkThumbprint(a)).not.toBe(jwkThumbprint(b));
  });
});
