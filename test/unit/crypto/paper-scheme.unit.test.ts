import { constants, generateKeyPairSync, publicDecrypt, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  type PaperEngine,
  paperDecrypt,
  paperEncrypt,
  paperVerify,
} from '../../../src/crypto/paper-scheme.js';

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const other = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ENGINES: PaperEngine[] = ['node-crypto', 'node-rsa'];
const PAIRS = ENGINES.flatMap((enc) => ENGINES.map((dec) => [enc, dec] as const));

describe('paper scheme', () => {
  it('is PKCS#1 v1.5 type-1 private-key encryption, one 256-byte block for a short ticket', () => {
    const ticket = randomBytes(32);
    const data = paperEncrypt(rsa.privateKey, ticket);
    expect(data).toBeInstanceOf(Buffer);
    expect(data.length).toBe(256);
    const raw = publicDecrypt({ key: rsa.publicKey, padding: constants.RSA_NO_PADDING }, data);
    expect(raw.subarray(0, 2)).toEqual(Buffer.from([0x00, 0x01]));
    expect(raw.subarray(raw.length - 32)).toEqual(ticket);
  });

  it.each(PAIRS)('interoperates: encrypt with %s, decrypt with %s', (enc, dec) => {
    for (const size of [0, 1, 32, 245, 246, 600]) {
      const ticket = randomBytes(size);
      const data = paperEncrypt(rsa.privateKey, ticket, enc);
      expect(data).toBeInstanceOf(Buffer);
      expect(data.length).toBe(256 * Math.max(1, Math.ceil(size / 245)));
      expect(paperDecrypt(rsa.publicKey, data, dec).equals(ticket)).toBe(true);
      expect(paperVerify(rsa.publicKey, data, ticket, dec)).toBe(true);
    }
  });

  it('both engines produce the same bytes (type-1 padding is deterministic)', () => {
    for (const size of [0, 10, 300, 491, 735, 1000]) {
      const ticket = randomBytes(size);
      const a = paperEncrypt(rsa.privateKey, ticket, 'node-rsa');
      expect(a.equals(paperEncrypt(rsa.privateKey, ticket))).toBe(true);
    }
  });

  it.each(ENGINES)('a private key also decrypts (its public half), engine %s', (engine) => {
    const ticket = randomBytes(16);
    expect(paperDecrypt(rsa.privateKey, paperEncrypt(rsa.privateKey, ticket), engine).equals(ticket)).toBe(
      true,
    );
  });

  it.each(ENGINES)('wrong key, flipped byte, other ticket, wrong length all fail (%s)', (engine) => {
    const ticket = randomBytes(32);
    const data = paperEncrypt(rsa.privateKey, ticket, engine);
    expect(paperVerify(other.publicKey, data, ticket, engine)).toBe(false);
    expect(() => paperDecrypt(other.publicKey, data, engine)).toThrow(
      expect.objectContaining({ code: 'SIGNATURE_INVALID' }),
    );
    for (const i of [0, 1, 100, 255]) {
      const flipped = Buffer.from(data);
      flipped[i] = (flipped[i] ?? 0) ^ 0x01;
      expect(paperVerify(rsa.publicKey, flipped, ticket, engine)).toBe(false);
    }
    expect(paperVerify(rsa.publicKey, data, randomBytes(32), engine)).toBe(false);
    expect(paperVerify(rsa.publicKey, data, ticket.subarray(1), engine)).toBe(false);
    expect(paperVerify(rsa.publicKey, data.subarray(1), ticket, engine)).toBe(false);
    expect(paperVerify(rsa.publicKey, Buffer.alloc(0), ticket, engine)).toBe(false);
    expect(paperVerify(rsa.publicKey, Buffer.concat([data, data]), ticket, engine)).toBe(false);
  });

  it('a ticket made by the other key does not verify, even from the same engine', () => {
    const ticket = randomBytes(32);
    expect(paperVerify(rsa.publicKey, paperEncrypt(other.privateKey, ticket), ticket)).toBe(false);
  });

  it('Ed25519 keys cannot do it: KEY_TYPE_UNSUPPORTED naming RSA', () => {
    const ed = generateKeyPairSync('ed25519');
    for (const engine of ENGINES) {
      expect(() => paperEncrypt(ed.privateKey, Buffer.from('t'), engine)).toThrow(
        expect.objectContaining({ code: 'KEY_TYPE_UNSUPPORTED', message: expect.stringMatching(/RSA key/) }),
      );
      expect(() => paperDecrypt(ed.publicKey, Buffer.alloc(64), engine)).toThrow(
        expect.objectContaining({ code: 'KEY_TYPE_UNSUPPORTED' }),
      );
    }
    expect(() => paperVerify(ed.publicKey, Buffer.alloc(64), Buffer.from('t'))).toThrow(
      expect.objectContaining({ code: 'KEY_TYPE_UNSUPPORTED' }),
    );
  });

  it('RSA-1024 is refused; a public key cannot encrypt', () => {
    const short = generateKeyPairSync('rsa', { modulusLength: 1024 });
    expect(() => paperEncrypt(short.privateKey, Buffer.from('t'))).toThrow(
      expect.objectContaining({ code: 'KEY_TYPE_UNSUPPORTED' }),
    );
    expect(() => paperEncrypt(rsa.publicKey, Buffer.from('t'))).toThrow(
      expect.objectContaining({ code: 'KEY_INVALID' }),
    );
  });

  it('an unknown engine is INVALID_INPUT', () => {
    expect(() => paperEncrypt(rsa.privateKey, Buffer.from('t'), 'openssl' as PaperEngine)).toThrow(
      expect.objectContaining({ code: 'INVALID_INPUT' }),
    );
  });
});
