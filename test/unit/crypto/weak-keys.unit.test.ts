import { createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { describeKey } from '../../../src/crypto/keys.js';
import { parsePublicKeyInput } from '../../../src/crypto/public-key-input.js';
import { jwkThumbprint } from '../../../src/crypto/thumbprint.js';
import { defencesFor } from '../../../src/defences/presets.js';
import { isTrustedMsError } from '../../../src/errors.js';
import { parseRevocationList } from '../../../src/protocol/revocation-list.js';
import { newExchangeKeyPair } from '../../../src/protocol/session-key.js';
import { buildSecurityService } from '../../../src/services/security/app.js';
import { ServiceRegistry } from '../../../src/services/security/registry.js';
import { RevocationBook } from '../../../src/services/security/revocations.js';
import { openLabStore } from '../../../src/store/open.js';
import {
  addUser,
  addUserKey,
  assertSoundUserKey,
  REMOVED_KEYS_LISTED,
  removeUserKey,
} from '../../../src/users/users.js';

/*
 * What the red team broke (this round's review of `user key add`): keys that parse but are unsound
 * were registered, and with them a constant "signature" logged a user in with the password alone.
 */
const jwkKey = (jwk: Record<string, string>) => createPublicKey({ key: jwk, format: 'jwk' });
const codeOf = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return isTrustedMsError(e) ? e.code : 'other';
  }
  return undefined;
};
const IDENTITY_X = Buffer.from(`01${'00'.repeat(31)}`, 'hex').toString('base64url');
const ORDER_2_X = Buffer.from(`ec${'ff'.repeat(30)}7f`, 'hex').toString('base64url');

function rsaJwk(e: string, oddModulus = true): Record<string, string> {
  const n = randomBytes(256);
  n[0] = (n[0] as number) | 0x80;
  n[255] = oddModulus ? (n[255] as number) | 1 : (n[255] as number) & 0xfe;
  return { kty: 'RSA', n: n.toString('base64url'), e };
}

describe('unsound public keys are refused wherever a key is taken', () => {
  it('Ed25519 points of small order, with or without the sign bit', () => {
    for (const x of [IDENTITY_X, ORDER_2_X]) {
      expect(codeOf(() => describeKey(jwkKey({ kty: 'OKP', crv: 'Ed25519', x })))).toBe('KEY_INVALID');
      expect(codeOf(() => parsePublicKeyInput(JSON.stringify({ kty: 'OKP', crv: 'Ed25519', x })))).toBe(
        'KEY_INVALID',
      );
    }
    const signed = Buffer.from(IDENTITY_X, 'base64url');
    signed[31] = (signed[31] as number) | 0x80;
    expect(
      codeOf(() => describeKey(jwkKey({ kty: 'OKP', crv: 'Ed25519', x: signed.toString('base64url') }))),
    ).toBe('KEY_INVALID');
    // a real key is fine
    expect(describeKey(generateKeyPairSync('ed25519').publicKey)).toEqual({ type: 'ed25519' });
  });

  it('RSA with e = 1, a small or even exponent, or an even modulus', () => {
    for (const [e, odd] of [
      ['AQ', true], // 1
      ['Aw', true], // 3
      ['AQAA', true], // 65536
      ['AQAB', false], // 65537, even modulus
    ] as const) {
      expect(
        codeOf(() => describeKey(jwkKey(rsaJwk(e, odd)))),
        `e=${e}`,
      ).toBe('KEY_INVALID');
    }
    expect(describeKey(generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey)).toEqual({
      type: 'rsa',
      bits: 2048,
    });
  });

  it('a key stored through the admin path is checked there: type, PEM and thumbprint must agree', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
    const pem = rsa.export({ format: 'pem', type: 'spki' }).toString();
    const good = { type: 'rsa' as const, publicKeyPem: pem, thumbprint: jwkThumbprint(rsa), createdAt: '' };
    expect(() => assertSoundUserKey(good)).not.toThrow();
    expect(codeOf(() => assertSoundUserKey({ ...good, type: 'ed25519' }))).toBe('KEY_INVALID');
    expect(codeOf(() => assertSoundUserKey({ ...good, thumbprint: 'A'.repeat(43) }))).toBe('KEY_INVALID');
  });
});

describe('the security service', () => {
  it('refuses the constant signature of a small-order key registered before keys were checked', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tms-weak-'));
    try {
      const store = openLabStore(join(dir, 'home'));
      await addUser(store, { name: 'carol', role: 'admin', password: 'carol-pw' });
      const weak = jwkKey({ kty: 'OKP', crv: 'Ed25519', x: IDENTITY_X });
      // As a store written by an earlier version would hold it: straight in, past the checks.
      await store.update((data) => {
        data.users.carol?.keys.push({
          type: 'ed25519',
          publicKeyPem: weak.export({ format: 'pem', type: 'spki' }).toString(),
          thumbprint: jwkThumbprint(weak),
          createdAt: new Date().toISOString(),
        });
      });
      const app = buildSecurityService({
        labId: 'weak',
        defences: defencesFor('trusted', ['limits:on']),
        store,
        registry: new ServiceRegistry(store, 'measured'),
        signingKey: { kid: 'weak', privateKey: generateKeyPairSync('ed25519').privateKey },
        sealKey: Buffer.alloc(32, 1),
        labToken: 'token',
        ticketTtlSeconds: 60,
        challengeTtlSeconds: 60,
      });
      try {
        const c = await app.inject({
          method: 'POST',
          url: '/v1/auth/challenge',
          payload: { user: 'carol', password: 'carol-pw', clientKey: newExchangeKeyPair().publicKeyRaw },
        });
        expect(c.statusCode).toBe(200);
        const forged = Buffer.concat([Buffer.from(`01${'00'.repeat(31)}`, 'hex'), Buffer.alloc(32)]);
        const v = await app.inject({
          method: 'POST',
          url: '/v1/auth/verify',
          payload: { id: c.json().id, signature: forged.toString('base64url') },
        });
        expect({ status: v.statusCode, code: v.json().code }).toEqual({
          status: 401,
          code: 'SIGNATURE_INVALID',
        });
      } finally {
        await app.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('many removed keys', () => {
  it('fold into one user-wide cut-off past REMOVED_KEYS_LISTED, and the published list stays valid', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tms-keys-'));
    try {
      const store = openLabStore(join(dir, 'home'));
      await addUser(store, { name: 'ivy', role: 'analyst', password: 'ivy-pw' });
      for (let i = 0; i <= REMOVED_KEYS_LISTED; i++) {
        const k = generateKeyPairSync('ed25519').publicKey;
        const key = {
          type: 'ed25519' as const,
          publicKeyPem: k.export({ format: 'pem', type: 'spki' }).toString(),
          thumbprint: jwkThumbprint(k),
          createdAt: '',
        };
        await addUserKey(store, 'ivy', key);
        await removeUserKey(store, 'ivy', key.thumbprint);
      }
      const record = (await store.data()).revocations?.users.ivy;
      expect(record?.keys).toBeUndefined();
      expect(record?.notBefore).toBeGreaterThan(0);
      const book = new RevocationBook(store);
      await book.load();
      const list = parseRevocationList(JSON.parse(JSON.stringify(book.list())));
      expect(list.users.ivy?.notBefore).toBe(record?.notBefore);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
