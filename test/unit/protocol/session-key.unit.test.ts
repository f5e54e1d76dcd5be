import { createPrivateKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { TrustedMsError } from '../../../src/errors.js';
import {
  deriveSessionKey,
  newExchangeKeyPair,
  openSessionKey,
  SESSION_KEY_INFO,
  sealSessionKey,
} from '../../../src/protocol/session-key.js';

const CHALLENGE_ID = 'AAECAwQFBgcICQoLDA0ODw';
const JTI = 'ICEiIyQlJicoKSorLC0uLw';

// RFC 7748 section 6.1
const hex64 = (hex: string) => Buffer.from(hex, 'hex').toString('base64url');
const ALICE_PRIVATE = createPrivateKey({
  key: {
    kty: 'OKP',
    crv: 'X25519',
    d: hex64('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'),
    x: hex64('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a'),
  },
  format: 'jwk',
});
const BOB_PUBLIC = hex64('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
// HKDF-SHA256 of the RFC's shared secret 4a5d9d5b...161742, documented in docs/protocol.md.
const KNOWN_SESSION_KEY = '6991b30e6d6b5ace0f7125aca7e52f5e216690455a8725131e79b5851db6f474';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof TrustedMsError) return err.code;
    throw err;
  }
  return undefined;
}

function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof TrustedMsError) return err.message;
    throw err;
  }
  throw new Error('expected a TrustedMsError');
}

describe('newExchangeKeyPair and deriveSessionKey', () => {
  it('gives a raw 32-byte public key in canonical base64url', () => {
    const kp = newExchangeKeyPair();
    expect(kp.publicKeyRaw).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(kp.publicKeyRaw, 'base64url')).toHaveLength(32);
    expect(kp.privateKey.asymmetricKeyType).toBe('x25519');
    expect(newExchangeKeyPair().publicKeyRaw).not.toBe(kp.publicKeyRaw);
  });

  it('lets both sides derive the same 32-byte key', () => {
    const client = newExchangeKeyPair();
    const server = newExchangeKeyPair();
    const a = deriveSessionKey(client.privateKey, server.publicKeyRaw, CHALLENGE_ID);
    const b = deriveSessionKey(server.privateKey, client.publicKeyRaw, CHALLENGE_ID);
    expect(a).toHaveLength(32);
    expect(a.equals(b)).toBe(true);
  });

  it('derives a different key for another challenge id or another peer', () => {
    const client = newExchangeKeyPair();
    const server = newExchangeKeyPair();
    const a = deriveSessionKey(client.privateKey, server.publicKeyRaw, CHALLENGE_ID);
    const b = deriveSessionKey(client.privateKey, server.publicKeyRaw, 'BAECAwQFBgcICQoLDA0ODw');
    const c = deriveSessionKey(client.privateKey, newExchangeKeyPair().publicKeyRaw, CHALLENGE_ID);
    expect(a.equals(b)).toBe(false);
    expect(a.equals(c)).toBe(false);
  });

  it('gives the documented known answer (RFC 7748 keys, HKDF-SHA256)', () => {
    expect(SESSION_KEY_INFO).toBe('trusted-ms session-key v1');
    expect(deriveSessionKey(ALICE_PRIVATE, BOB_PUBLIC, CHALLENGE_ID).toString('hex')).toBe(KNOWN_SESSION_KEY);
  });

  it.each([
    ['zero', '00'.repeat(32)],
    ['one', `01${'00'.repeat(31)}`],
    ['order-8 point', 'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800'],
    ['p - 1', `ecff${'ff'.repeat(29)}7f`],
  ])('refuses a low-order peer key (%s) with INVALID_INPUT', (_name, hex) => {
    const kp = newExchangeKeyPair();
    expect(codeOf(() => deriveSessionKey(kp.privateKey, hex64(hex), CHALLENGE_ID))).toBe('INVALID_INPUT');
  });

  it('refuses a malformed peer key, challenge id or own key with INVALID_INPUT', () => {
    const kp = newExchangeKeyPair();
    const peer = newExchangeKeyPair().publicKeyRaw;
    for (const bad of [
      '',
      `${peer}=`,
      peer.slice(0, 42),
      `${peer.slice(0, 42)}+`,
      Buffer.alloc(32).toString('hex'),
    ]) {
      expect(codeOf(() => deriveSessionKey(kp.privateKey, bad, CHALLENGE_ID))).toBe('INVALID_INPUT');
    }
    for (const id of ['', 'short', 'AAECAwQFBgcICQoLDA0ODw\n']) {
      expect(codeOf(() => deriveSessionKey(kp.privateKey, peer, id))).toBe('INVALID_INPUT');
    }
    const ed = generateKeyPairSync('ed25519');
    const x = generateKeyPairSync('x25519');
    expect(codeOf(() => deriveSessionKey(ed.privateKey, peer, CHALLENGE_ID))).toBe('INVALID_INPUT');
    expect(codeOf(() => deriveSessionKey(x.publicKey, peer, CHALLENGE_ID))).toBe('INVALID_INPUT');
  });
});

describe('sealSessionKey and openSessionKey', () => {
  const sealKey = randomBytes(32);
  const sessionKey = randomBytes(32);

  it('round-trips, with a fresh IV every time', () => {
    const a = sealSessionKey(sealKey, sessionKey, JTI);
    const b = sealSessionKey(sealKey, sessionKey, JTI);
    expect(a).toMatch(/^[A-Za-z0-9_-]{80}$/);
    expect(a).not.toBe(b);
    expect(openSessionKey(sealKey, a, JTI).equals(sessionKey)).toBe(true);
    expect(openSessionKey(sealKey, b, JTI).equals(sessionKey)).toBe(true);
  });

  it('refuses another jti, another seal key or any flipped byte with a generic TICKET_INVALID', () => {
    const sealed = sealSessionKey(sealKey, sessionKey, JTI);
    expect(codeOf(() => openSessionKey(sealKey, sealed, 'JCEiIyQlJicoKSorLC0uLw'))).toBe('TICKET_INVALID');
    expect(codeOf(() => openSessionKey(randomBytes(32), sealed, JTI))).toBe('TICKET_INVALID');
    const bytes = Buffer.from(sealed, 'base64url');
    for (let i = 0; i < bytes.length; i++) {
      const copy = Buffer.from(bytes);
      copy[i] = copy[i]! ^ 0x01;
      expect(codeOf(() => openSessionKey(sealKey, copy.toString('base64url'), JTI))).toBe('TICKET_INVALID');
    }
    expect(messageOf(() => openSessionKey(sealKey, sealed, 'JCEiIyQlJicoKSorLC0uLw'))).toBe(
      'ticket verification failed',
    );
  });

  it('refuses malformed sealed keys with TICKET_INVALID', () => {
    const sealed = sealSessionKey(sealKey, sessionKey, JTI);
    for (const bad of [
      '',
      sealed.slice(0, 79),
      `${sealed}A`,
      `${sealed}=`,
      sealed.replace(/[A-Z]/, '+'),
      42,
    ]) {
      expect(codeOf(() => openSessionKey(sealKey, bad as string, JTI))).toBe('TICKET_INVALID');
    }
    const nonCanonical = `${sealed.slice(0, 79)}${sealed.endsWith('A') ? 'B' : 'A'}`;
    expect(codeOf(() => openSessionKey(sealKey, nonCanonical, JTI))).toBe('TICKET_INVALID');
  });

  it('refuses bad inputs to seal with INVALID_INPUT', () => {
    expect(codeOf(() => sealSessionKey(randomBytes(16), sessionKey, JTI))).toBe('INVALID_INPUT');
    expect(codeOf(() => sealSessionKey(sealKey, randomBytes(31), JTI))).toBe('INVALID_INPUT');
    expect(codeOf(() => sealSessionKey(sealKey, sessionKey, 'short'))).toBe('INVALID_INPUT');
  });
});
