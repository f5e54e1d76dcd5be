import { readFileSync } from 'node:fs';
import bcrypt from 'bcryptjs';
import { describe, expect, it } from 'vitest';
import {
  classifyHash,
  dummyHash,
  hashPassword,
  MAX_PASSWORD_BYTES,
  verifyPassword,
} from '../../../src/crypto/password.js';

const SCRYPT_FORM = /^\$scrypt\$ln=14,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/;
const fixture = readFileSync(new URL('../../../fixtures/htpasswd/bcrypt.htpasswd', import.meta.url), 'utf8');
const carolHash = fixture.split('\n')[0]!.split(':')[1]!;

describe('hashPassword', () => {
  it('writes a self-describing scrypt hash with a fresh salt', async () => {
    const a = await hashPassword('correct horse');
    const b = await hashPassword('correct horse');
    expect(a).toMatch(SCRYPT_FORM);
    expect(a).not.toBe(b);
    expect(await verifyPassword('correct horse', a)).toEqual({ ok: true, needsUpgrade: false });
  });

  it('refuses an empty password with PASSWORD_REQUIRED', async () => {
    await expect(hashPassword('')).rejects.toMatchObject({ code: 'PASSWORD_REQUIRED' });
  });

  it(`refuses passwords over ${MAX_PASSWORD_BYTES} bytes (counted in UTF-8) with INVALID_INPUT`, async () => {
    await expect(hashPassword('a'.repeat(MAX_PASSWORD_BYTES + 1))).rejects.toMatchObject({
      code: 'INVALID_INPUT',
    });
    await expect(hashPassword('é'.repeat(MAX_PASSWORD_BYTES / 2 + 1))).rejects.toMatchObject({
      code: 'INVALID_INPUT',
    });
    expect(await hashPassword('a'.repeat(MAX_PASSWORD_BYTES))).toMatch(SCRYPT_FORM);
  });

  it('hashes non-ASCII passwords as UTF-8', async () => {
    const h = await hashPassword('pässwörd-密码');
    expect((await verifyPassword('pässwörd-密码', h)).ok).toBe(true);
    expect((await verifyPassword('passwort-密码', h)).ok).toBe(false);
  });
});

describe('verifyPassword', () => {
  it('rejects a wrong password', async () => {
    const h = await hashPassword('right');
    expect(await verifyPassword('wrong', h)).toEqual({ ok: false, needsUpgrade: false });
  });

  it('reads the parameters back from the hash and flags weaker ones for upgrade', async () => {
    const weak = await hashPassword('pw', { ln: 10, r: 8, p: 1 });
    expect(weak).toMatch(/^\$scrypt\$ln=10,r=8,p=1\$/);
    expect(await verifyPassword('pw', weak)).toEqual({ ok: true, needsUpgrade: true });
    expect(await verifyPassword('nope', weak)).toEqual({ ok: false, needsUpgrade: false });
  });

  it('accepts stronger parameters than the current ones without an upgrade', async () => {
    const strong = await hashPassword('pw', { ln: 14, r: 16, p: 1 });
    expect(await verifyPassword('pw', strong)).toEqual({ ok: true, needsUpgrade: false });
  });

  it('refuses scrypt hashes with out-of-range parameters without computing them', async () => {
    const good = await hashPassword('pw');
    const [, , , salt, hash] = good.split('$');
    const started = Date.now();
    for (const params of ['ln=30,r=8,p=1', 'ln=14,r=999,p=1', 'ln=14,r=8,p=99', 'ln=4,r=8,p=1']) {
      expect(await verifyPassword('pw', `$scrypt$${params}$${salt}$${hash}`)).toEqual({
        ok: false,
        needsUpgrade: false,
      });
    }
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('never matches malformed or unknown hashes', async () => {
    const good = await hashPassword('pw');
    for (const stored of [
      '',
      'pw', // plain text is never compared
      `${good.slice(0, -5)}!!!!!`,
      good.replace('$scrypt$', '$scrypt2$'),
      '$scrypt$ln=14,r=8,p=1$$',
      '$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA',
      '$apr1$gnjjEeqL$Iv0QG75nj4WfRk0jSybP50',
      '{SHA}OV3nZJDd/dHXGdv2Jo7UDjjvl+I=',
    ]) {
      expect(await verifyPassword('pw', stored)).toEqual({ ok: false, needsUpgrade: false });
    }
  });

  it('verifies $2y$ bcrypt hashes made by Apache htpasswd -B, flagged for upgrade', async () => {
    expect(carolHash).toMatch(/^\$2y\$05\$/);
    expect(await verifyPassword('carol-pass-1', carolHash)).toEqual({ ok: true, needsUpgrade: true });
    expect(await verifyPassword('carol-pass-2', carolHash)).toEqual({ ok: false, needsUpgrade: false });
  });

  it('verifies $2a$ and $2b$ bcrypt hashes', async () => {
    const b = bcrypt.hashSync('secret', 4); // $2b$
    expect(b).toMatch(/^\$2b\$/);
    expect(await verifyPassword('secret', b)).toEqual({ ok: true, needsUpgrade: true });
    const a = `$2a$${b.slice(4)}`;
    expect(await verifyPassword('secret', a)).toEqual({ ok: true, needsUpgrade: true });
  });

  it('uses only the first 72 bytes of a password for bcrypt (as Apache does)', async () => {
    const long = 'x'.repeat(72);
    const h = bcrypt.hashSync(long, 4);
    expect((await verifyPassword(`${long}anything`, h)).ok).toBe(true);
  });

  it('throws on an empty or oversized password before looking at the hash', async () => {
    await expect(verifyPassword('', carolHash)).rejects.toMatchObject({ code: 'PASSWORD_REQUIRED' });
    await expect(verifyPassword('a'.repeat(2000), carolHash)).rejects.toMatchObject({
      code: 'INVALID_INPUT',
    });
  });

  it('never matches the dummy hash, which has the current form', async () => {
    const d = dummyHash();
    expect(d).toMatch(SCRYPT_FORM);
    expect(await verifyPassword('anything', d)).toEqual({ ok: false, needsUpgrade: false });
  });
});

describe('classifyHash', () => {
  const cases: [string, ReturnType<typeof classifyHash>][] = [
    ['$scrypt$ln=14,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g', 'scrypt'],
    ['$scrypt$ln=14$broken', 'unknown'],
    ['$2y$05$nbVVKOtRM3y5remEU4V7HuB4uu2aCEVlrsejWuYFc/zgMfJvlorYC', 'bcrypt'],
    ['$2b$10$nbVVKOtRM3y5remEU4V7HuB4uu2aCEVlrsejWuYFc/zgMfJvlorYC', 'bcrypt'],
    ['$2a$10$nbVVKOtRM3y5remEU4V7HuB4uu2aCEVlrsejWuYFc/zgMfJvlorYC', 'bcrypt'],
    ['$2y$05$tooshort', 'unknown'],
    ['$2x$05$nbVVKOtRM3y5remEU4V7HuB4uu2aCEVlrsejWuYFc/zgMfJvlorYC', 'unknown'],
    ['$apr1$gnjjEeqL$Iv0QG75nj4WfRk0jSybP50', 'apr1'],
    ['{SHA}OV3nZJDd/dHXGdv2Jo7UDjjvl+I=', 'sha1'],
    ['.n9yWxTgIjbcQ', 'crypt'],
    ['$1$saltsalt$abcdefghijklmnopqrstuv', 'crypt'],
    ['$5$rounds=5000$salt$hash', 'crypt'],
    ['$6$salt$hash', 'crypt'],
    ['heidi-pass-6', 'plain'],
    ['$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA', 'unknown'],
    ['', 'unknown'],
  ];
  for (const [hash, format] of cases) {
    it(`${JSON.stringify(hash.slice(0, 24))} → ${format}`, () => {
      expect(classifyHash(hash)).toBe(format);
    });
  }
});
