import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  describeKey,
  generateUserKeyPair,
  loadPrivateKeyFile,
  parsePublicKeyPem,
  privateKeyPath,
  type UserKeyPair,
  writePrivateKeyFile,
} from '../../../src/crypto/keys.js';
import { jwkThumbprint } from '../../../src/crypto/thumbprint.js';
import { TrustedMsError } from '../../../src/errors.js';

// A self-signed Ed25519 certificate: public material only.
const CERTIFICATE_PEM = `-----BEGIN CERTIFICATE-----
MIIBSDCB+6ADAgECAhR4h0v4xQljxhTkz4LaiablAlWhTjAFBgMrZXAwGjEYMBYG
A1UEAwwPdHJ1c3RlZC1tcy10ZXN0MB4XDTI2MTEyMzE0MTcwNFoXDTM2MTEyMDE0
MTcwNFowGjEYMBYGA1UEAwwPdHJ1c3RlZC1tcy10ZXN0MCowBQYDK2VwAyEAPGUY
GvybcdUhbtTZ2Xw9JM/NefRs5pUAQFy+2/YcrjyjUzBRMB0GA1UdDgQWBBTS+Soo
BO75TrQzqGr8lSkdNwsoaTAfBgNVHSMEGDAWgBTS+SooBO75TrQzqGr8lSkdNwso
aTAPBgNVHRMBAf8EBTADAQH/MAUGAytlcANBAEJZE5S/+APwMo7gsG7o6s1wmRos
1q1EdYnQ/QhCWuANyRDBb08ticd8aVqwNa9PVzAvB322K2Y60RZA4Uttbgo=
-----END CERTIFICATE-----
`;

let root: string;
let dir: string;
let ed: UserKeyPair;
let rsa: UserKeyPair;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'tms-keys-'));
  [ed, rsa] = await Promise.all([generateUserKeyPair(), generateUserKeyPair('rsa')]);
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});
let n = 0;
beforeEach(async () => {
  dir = join(root, `case-${++n}`);
  await mkdir(dir, { mode: 0o700 });
});

/** Writes `content` to `name` in the case folder with exactly `mode`. */
async function put(name: string, content: string, mode = 0o600): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, content, { mode });
  await chmod(path, mode);
  return path;
}

const pkcs8 = (key: KeyObject): string => key.export({ type: 'pkcs8', format: 'pem' }).toString();

/** Runs `fn` expecting a TrustedMsError and returns it, for checks on code and message. */
async function failure(fn: () => Promise<unknown>): Promise<TrustedMsError> {
  try {
    await fn();
  } catch (err) {
    expect(err).toBeInstanceOf(TrustedMsError);
    return err as TrustedMsError;
  }
  throw new Error('expected a failure');
}

describe('generateUserKeyPair', () => {
  it('makes an Ed25519 pair by default, with SPKI PEM and thumbprint', () => {
    expect(ed.type).toBe('ed25519');
    expect(ed.bits).toBeUndefined();
    expect(ed.privateKey.asymmetricKeyType).toBe('ed25519');
    expect(ed.publicKeyPem).toMatch(/^-----BEGIN PUBLIC KEY-----\n/);
    expect(ed.thumbprint).toBe(jwkThumbprint(ed.publicKey));
  });

  it('makes RSA-2048 by default for rsa', () => {
    expect(rsa.type).toBe('rsa');
    expect(rsa.bits).toBe(2048);
    expect(rsa.publicKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
  });

  it('refuses bits with ed25519 and sizes outside the list', async () => {
    await expect(generateUserKeyPair('ed25519', 2048)).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    await expect(generateUserKeyPair('rsa', 1024)).rejects.toMatchObject({
      code: 'INVALID_INPUT',
      message: expect.stringMatching(/2048, 3072, 4096/),
    });
    await expect(generateUserKeyPair('rsa', 2047)).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    await expect(generateUserKeyPair('dsa' as 'rsa')).rejects.toMatchObject({ code: 'INVALID_INPUT' });
  });
});

describe('privateKeyPath', () => {
  it('is <keyDir>/<user>.pem', () => {
    expect(privateKeyPath('/keys', 'alice')).toBe(join('/keys', 'alice.pem'));
  });
  it('refuses names that would leave the folder', () => {
    for (const bad of ['', '../alice', 'a/b', '.hidden', 'a\\b']) {
      expect(() => privateKeyPath('/keys', bad)).toThrow(expect.objectContaining({ code: 'INVALID_NAME' }));
    }
  });
});

describe('writePrivateKeyFile', () => {
  it('writes PKCS#8 PEM with mode exactly 0600 and creates missing folders 0700', async () => {
    const path = join(dir, 'new', 'deeper', 'alice.pem');
    await writePrivateKeyFile(path, ed.privateKey);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, 'new'))).mode & 0o777).toBe(0o700);
    expect((await stat(join(dir, 'new', 'deeper'))).mode & 0o777).toBe(0o700);
    const text = await readFile(path, 'utf8');
    expect(text.startsWith('-----BEGIN PRIVATE KEY-----\n')).toBe(true);
    // no temp file left behind
    expect(await readdir(join(dir, 'new', 'deeper'))).toEqual(['alice.pem']);
  });

  it('keeps 0600 under a permissive umask', async () => {
    const old = process.umask(0);
    try {
      const path = join(dir, 'umask', 'k.pem');
      await writePrivateKeyFile(path, rsa.privateKey);
      expect((await stat(path)).mode & 0o777).toBe(0o600);
      expect((await stat(join(dir, 'umask'))).mode & 0o777).toBe(0o700);
    } finally {
      process.umask(old);
    }
  });

  it('round-trips through loadPrivateKeyFile for both key types', async () => {
    for (const pair of [ed, rsa]) {
      const path = join(dir, `${pair.type}.pem`);
      await writePrivateKeyFile(path, pair.privateKey);
      const loaded = await loadPrivateKeyFile(path);
      expect(loaded.equals(pair.privateKey)).toBe(true);
      expect(describeKey(loaded)).toEqual(
        pair.type === 'rsa' ? { type: 'rsa', bits: 2048 } : { type: 'ed25519' },
      );
    }
  });

  it('refuses an existing file without overwrite, and leaves it untouched', async () => {
    const path = await put('alice.pem', 'original');
    const err = await failure(() => writePrivateKeyFile(path, ed.privateKey));
    expect(err.code).toBe('KEY_EXISTS');
    expect(err.actions.join(' ')).toMatch(/--force/);
    expect(await readFile(path, 'utf8')).toBe('original');
    expect(await readdir(dir)).toEqual(['alice.pem']);
  });

  it('replaces an existing file with overwrite, mode 0600 even if the old one was 0644', async () => {
    const path = await put('alice.pem', 'original', 0o644);
    await writePrivateKeyFile(path, rsa.privateKey, { overwrite: true });
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await loadPrivateKeyFile(path)).equals(rsa.privateKey)).toBe(true);
  });

  it('refuses a public key or an unsupported key', async () => {
    await expect(writePrivateKeyFile(join(dir, 'p.pem'), ed.publicKey)).rejects.toMatchObject({
      code: 'KEY_INVALID',
    });
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    await expect(writePrivateKeyFile(join(dir, 'ec.pem'), ec)).rejects.toMatchObject({
      code: 'KEY_TYPE_UNSUPPORTED',
    });
  });
});

describe('loadPrivateKeyFile', () => {
  it('missing file: KEY_NOT_FOUND', async () => {
    await expect(loadPrivateKeyFile(join(dir, 'nope.pem'))).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
  });

  it('a folder instead of a file: KEY_UNREADABLE', async () => {
    const path = join(dir, 'folder.pem');
    await mkdir(path, { mode: 0o700 });
    await expect(loadPrivateKeyFile(path)).rejects.toMatchObject({ code: 'KEY_UNREADABLE' });
  });

  it('a FIFO: KEY_UNREADABLE, without waiting for a writer', async () => {
    const path = join(dir, 'fifo.pem');
    execFileSync('mkfifo', ['-m', '600', path]);
    await expect(loadPrivateKeyFile(path)).rejects.toMatchObject({ code: 'KEY_UNREADABLE' });
  });

  it.each([
    [0o644, '0644'],
    [0o640, '0640'],
    [0o604, '0604'],
    [0o700, null],
  ])('mode %o: KEY_PERMISSIONS_TOO_OPEN or fine', async (mode, shown) => {
    const path = await put('alice.pem', pkcs8(ed.privateKey), mode);
    if (shown === null) {
      // 0700 has no group/other bits: accepted, like ssh
      await expect(loadPrivateKeyFile(path)).resolves.toBeDefined();
      return;
    }
    const err = await failure(() => loadPrivateKeyFile(path));
    expect(err.code).toBe('KEY_PERMISSIONS_TOO_OPEN');
    expect(err.message).toContain(shown);
    expect(err.message).toContain(`chmod 600 ${path}`);
    expect(err.actions).toEqual([`chmod 600 ${path}`]);
    expect(err.message).not.toMatch(/BEGIN|PRIVATE KEY-----|MC4C/);
  });

  it('garbage: KEY_INVALID', async () => {
    const path = await put('garbage.pem', 'this is not a key\n');
    await expect(loadPrivateKeyFile(path)).rejects.toMatchObject({ code: 'KEY_INVALID' });
  });

  it('an empty file: KEY_INVALID', async () => {
    const path = await put('empty.pem', '');
    await expect(loadPrivateKeyFile(path)).rejects.toMatchObject({ code: 'KEY_INVALID' });
  });

  it('a corrupted PEM body: KEY_INVALID, and the message does not echo it', async () => {
    const broken = pkcs8(rsa.privateKey).replace(/\n[A-Za-z0-9+/]{20}/, '\n!!!!corrupted!!!!!!!');
    const path = await put('broken.pem', broken);
    const err = await failure(() => loadPrivateKeyFile(path));
    expect(err.code).toBe('KEY_INVALID');
    expect(err.message).not.toMatch(/BEGIN|corrupted|[A-Za-z0-9+/]{40}/);
  });

  it('a public key PEM in the private key file: KEY_INVALID', async () => {
    const path = await put('pub.pem', ed.publicKeyPem);
    await expect(loadPrivateKeyFile(path)).rejects.toMatchObject({ code: 'KEY_INVALID' });
  });

  it('a certificate: KEY_INVALID', async () => {
    const path = await put('cert.pem', CERTIFICATE_PEM);
    await expect(loadPrivateKeyFile(path)).rejects.toMatchObject({ code: 'KEY_INVALID' });
  });

  it('a passphrase-protected key: KEY_PASSPHRASE_REQUIRED without a passphrase, naming the fix; opened with it', async () => {
    const encrypted = ed.privateKey
      .export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'secret' })
      .toString();
    const path = await put('enc.pem', encrypted);
    const err = await failure(() => loadPrivateKeyFile(path));
    expect(err.code).toBe('KEY_PASSPHRASE_REQUIRED');
    expect(err.actions.join(' ')).toMatch(/--passphrase-stdin/);
    expect(err.message).not.toMatch(/BEGIN|secret/);
    const opened = await loadPrivateKeyFile(path, { passphrase: async () => 'secret' });
    expect(opened.equals(ed.privateKey)).toBe(true);
    const wrong = await failure(() => loadPrivateKeyFile(path, { passphrase: async () => 'guess' }));
    expect(wrong.code).toBe('KEY_PASSPHRASE_WRONG');
    expect(wrong.message).not.toMatch(/guess|BEGIN/);
  });

  it('an old-style PKCS#1 encrypted RSA key: KEY_PASSPHRASE_REQUIRED, opened with its passphrase', async () => {
    const encrypted = rsa.privateKey
      .export({ type: 'pkcs1', format: 'pem', cipher: 'aes-128-cbc', passphrase: 'secret' })
      .toString();
    const path = await put('enc1.pem', encrypted);
    await expect(loadPrivateKeyFile(path)).rejects.toMatchObject({ code: 'KEY_PASSPHRASE_REQUIRED' });
    const opened = await loadPrivateKeyFile(path, { passphrase: async () => 'secret' });
    expect(opened.equals(rsa.privateKey)).toBe(true);
  });

  it('accepts a PKCS#1 RSA private key', async () => {
    const path = await put('pkcs1.pem', rsa.privateKey.export({ type: 'pkcs1', format: 'pem' }).toString());
    expect((await loadPrivateKeyFile(path)).equals(rsa.privateKey)).toBe(true);
  });

  it('RSA-1024: KEY_TYPE_UNSUPPORTED', async () => {
    const short = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;
    const path = await put('short.pem', pkcs8(short));
    const err = await failure(() => loadPrivateKeyFile(path));
    expect(err.code).toBe('KEY_TYPE_UNSUPPORTED');
    expect(err.message).toMatch(/2048/);
  });

  it('EC P-256 (PKCS#8 and SEC1): KEY_TYPE_UNSUPPORTED', async () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    for (const [name, pem] of [
      ['ec8.pem', pkcs8(ec)],
      ['sec1.pem', ec.export({ type: 'sec1', format: 'pem' }).toString()],
    ] as const) {
      const path = await put(name, pem);
      await expect(loadPrivateKeyFile(path)).rejects.toMatchObject({ code: 'KEY_TYPE_UNSUPPORTED' });
    }
  });

  it('Ed448 and X25519: KEY_TYPE_UNSUPPORTED', async () => {
    for (const type of ['ed448', 'x25519'] as const) {
      const key = generateKeyPairSync(type as 'ed448').privateKey;
      const path = await put(`${type}.pem`, pkcs8(key));
      await expect(loadPrivateKeyFile(path)).rejects.toMatchObject({ code: 'KEY_TYPE_UNSUPPORTED' });
    }
  });
});

describe('parsePublicKeyPem', () => {
  it('parses SPKI PEM of both types', () => {
    expect(parsePublicKeyPem(ed.publicKeyPem).equals(ed.publicKey)).toBe(true);
    expect(parsePublicKeyPem(rsa.publicKeyPem).equals(rsa.publicKey)).toBe(true);
  });

  it('parses a PKCS#1 RSA public key', () => {
    const pem = rsa.publicKey.export({ type: 'pkcs1', format: 'pem' }).toString();
    expect(parsePublicKeyPem(pem).equals(rsa.publicKey)).toBe(true);
  });

  it('refuses garbage, a private key and a certificate with KEY_INVALID', () => {
    for (const bad of [
      'garbage',
      '',
      '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n',
      pkcs8(ed.privateKey),
      CERTIFICATE_PEM,
    ]) {
      let caught: unknown;
      try {
        parsePublicKeyPem(bad);
      } catch (err) {
        caught = err;
      }
      expect(caught).toMatchObject({ code: 'KEY_INVALID' });
      expect((caught as Error).message).not.toMatch(/BEGIN/);
    }
  });

  it('refuses EC and short RSA keys with KEY_TYPE_UNSUPPORTED', () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    const short = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey;
    for (const key of [ec, short]) {
      const pem = key.export({ type: 'spki', format: 'pem' }).toString();
      expect(() => parsePublicKeyPem(pem)).toThrow(expect.objectContaining({ code: 'KEY_TYPE_UNSUPPORTED' }));
    }
  });
});

describe('describeKey', () => {
  it('names the type and RSA size', () => {
    expect(describeKey(ed.publicKey)).toEqual({ type: 'ed25519' });
    expect(describeKey(rsa.privateKey)).toEqual({ type: 'rsa', bits: 2048 });
  });
});
