import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { algorithmForKey, signBytes, verifyBytes } from '../../../src/crypto/signature.js';

const ed = generateKeyPairSync('ed25519');
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const data = Buffer.from('trusted-ms test message');
const code = (c: string) => expect.objectContaining({ code: c });

describe.each([
  ['Ed25519', ed, 'EdDSA', 64],
  ['RSA-2048', rsa, 'PS256', 256],
] as const)('%s', (_name, pair, alg, length) => {
  it(`signs with ${alg} and verifies`, () => {
    expect(algorithmForKey(pair.publicKey)).toBe(alg);
    const sig = signBytes(pair.privateKey, data);
    expect(sig.length).toBe(length);
    expect(() => verifyBytes(pair.publicKey, data, sig)).not.toThrow();
  });

  it('a tampered signature or message: SIGNATURE_INVALID', () => {
    const sig = signBytes(pair.privateKey, data);
    const bad = Buffer.from(sig);
    bad[10] = (bad[10] ?? 0) ^ 0x80;
    expect(() => verifyBytes(pair.publicKey, data, bad)).toThrow(code('SIGNATURE_INVALID'));
    expect(() => verifyBytes(pair.publicKey, Buffer.from('other'), sig)).toThrow(code('SIGNATURE_INVALID'));
    expect(() => verifyBytes(pair.publicKey, data, sig.subarray(1))).toThrow(code('SIGNATURE_INVALID'));
    expect(() => verifyBytes(pair.publicKey, data, Buffer.alloc(0))).toThrow(code('SIGNATURE_INVALID'));
  });

  it('the wrong key: SIGNATURE_INVALID', () => {
    const other =
      alg === 'EdDSA' ? generateKeyPairSync('ed25519') : generateKeyPairSync('rsa', { modulusLength: 2048 });
    const sig = signBytes(pair.privateKey, data);
    expect(() => verifyBytes(other.publicKey, data, sig)).toThrow(code('SIGNATURE_INVALID'));
  });

  it('an algorithm outside the allow-list: ALGORITHM_NOT_ALLOWED', () => {
    const sig = signBytes(pair.privateKey, data);
    const allowed = alg === 'EdDSA' ? (['PS256'] as const) : (['EdDSA'] as const);
    expect(() => verifyBytes(pair.publicKey, data, sig, allowed)).toThrow(code('ALGORITHM_NOT_ALLOWED'));
    expect(() => verifyBytes(pair.publicKey, data, sig, [])).toThrow(code('ALGORITHM_NOT_ALLOWED'));
  });

  it('the failure message says nothing specific', () => {
    expect(() => verifyBytes(pair.publicKey, data, Buffer.alloc(length))).toThrow(
      /^signature verification failed$/,
    );
  });
});

describe('unsupported keys', () => {
  it('RSA-1024: KEY_TYPE_UNSUPPORTED for signing and verifying', () => {
    const short = generateKeyPairSync('rsa', { modulusLength: 1024 });
    expect(() => signBytes(short.privateKey, data)).toThrow(code('KEY_TYPE_UNSUPPORTED'));
    expect(() => verifyBytes(short.publicKey, data, Buffer.alloc(128))).toThrow(code('KEY_TYPE_UNSUPPORTED'));
  });

  it('EC P-256: KEY_TYPE_UNSUPPORTED for signing and verifying', () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    expect(() => signBytes(ec.privateKey, data)).toThrow(code('KEY_TYPE_UNSUPPORTED'));
    expect(() => verifyBytes(ec.publicKey, data, Buffer.alloc(64))).toThrow(code('KEY_TYPE_UNSUPPORTED'));
  });
});
