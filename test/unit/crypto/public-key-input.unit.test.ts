import { execFileSync } from 'node:child_process';
import { createHash, createPublicKey } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePublicKeyInput } from '../../../src/crypto/public-key-input.js';
import { jwkThumbprint } from '../../../src/crypto/thumbprint.js';
import { isTrustedMsError } from '../../../src/errors.js';

/**
 * Keys made by the tools users have (Debian's ssh-keygen and openssl), never by our own code, in
 * every form `user key add` reads; each bad input is refused with its code and never echoed.
 */

let dir: string;
const file = (name: string) => readFile(join(dir, name), 'utf8');
const run = (cmd: string, args: string[]) => execFileSync(cmd, args, { cwd: dir, stdio: 'pipe' });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tms-pubkey-'));
  run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'alice@laptop', '-f', 'ed']);
  run('ssh-keygen', ['-q', '-t', 'rsa', '-b', '2048', '-N', '', '-f', 'rsa']);
  run('ssh-keygen', ['-q', '-t', 'rsa', '-b', '1024', '-N', '', '-f', 'rsa1024']);
  run('ssh-keygen', ['-q', '-t', 'ecdsa', '-N', '', '-f', 'ec']);
  run('openssl', ['genpkey', '-algorithm', 'ed25519', '-out', 'o-ed.pem']);
  run('openssl', ['pkey', '-in', 'o-ed.pem', '-pubout', '-out', 'o-ed.pub.pem']);
  // The OpenSSH key's public half as PEM, by ssh-keygen itself: the same key in two forms.
  run('sh', ['-c', 'ssh-keygen -e -m PKCS8 -f rsa.pub > rsa.pub.pem']);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

function refused(text: string): { code: string; message: string } {
  try {
    parsePublicKeyInput(text);
  } catch (err) {
    if (isTrustedMsError(err)) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error('accepted');
}

describe('parsePublicKeyInput', () => {
  it('reads an ssh-keygen Ed25519 line (with its comment) as the key ssh-keygen made', async () => {
    const line = await file('ed.pub');
    const { key, format } = parsePublicKeyInput(line);
    expect(format).toBe('openssh');
    expect(key.asymmetricKeyType).toBe('ed25519');
    // Independent check: the OpenSSH blob ends with the 32 raw key bytes (RFC 8709 §4).
    const blob = Buffer.from(line.split(' ')[1] as string, 'base64');
    expect(key.export({ format: 'jwk' }).x).toBe(blob.subarray(blob.length - 32).toString('base64url'));
  });

  it('gives an ssh-rsa line and the same key as PEM (converted by ssh-keygen) one thumbprint', async () => {
    const a = parsePublicKeyInput(await file('rsa.pub'));
    const b = parsePublicKeyInput(await file('rsa.pub.pem'));
    expect(a.format).toBe('openssh');
    expect(b.format).toBe('pem');
    expect(a.key.asymmetricKeyDetails?.modulusLength).toBe(2048);
    expect(jwkThumbprint(a.key)).toBe(jwkThumbprint(b.key));
  });

  it('computes the RFC 7638 thumbprint of a JWK as the RFC spells it', async () => {
    const jwk = createPublicKey(await file('o-ed.pub.pem')).export({ format: 'jwk' });
    const { key, format } = parsePublicKeyInput(JSON.stringify({ ...jwk, kid: 'laptop', use: 'sig' }));
    expect(format).toBe('jwk');
    const canonical = `{"crv":"Ed25519","kty":"OKP","x":"${jwk.x}"}`;
    expect(jwkThumbprint(key)).toBe(createHash('sha256').update(canonical).digest('base64url'));
  });

  it.each([
    ['RSA-1024 (ssh-keygen)', () => file('rsa1024.pub'), 'KEY_TYPE_UNSUPPORTED'],
    ['an ECDSA key', () => file('ec.pub'), 'KEY_TYPE_UNSUPPORTED'],
    ['a truncated PEM', async () => (await file('o-ed.pub.pem')).slice(0, 60), 'KEY_INVALID'],
    [
      'a PEM missing a line of its base64',
      async () => {
        const lines = (await file('rsa.pub.pem')).split('\n');
        lines.splice(3, 1);
        return lines.join('\n');
      },
      'KEY_INVALID',
    ],
    ['a comment-only OpenSSH file', async () => '# alice laptop\n\n# nothing else\n', 'KEY_INVALID'],
    [
      'an ssh-ed25519 blob with bytes after the key',
      async () => {
        const [type, b64] = (await file('ed.pub')).split(' ') as [string, string];
        return `${type} ${Buffer.concat([Buffer.from(b64, 'base64'), Buffer.from([0, 0, 0, 1, 7])]).toString('base64')}`;
      },
      'KEY_INVALID',
    ],
    ['an ssh-ed25519 line cut short', async () => (await file('ed.pub')).slice(0, 40), 'KEY_INVALID'],
    [
      'a type that lies about its blob',
      async () => (await file('ed.pub')).replace('ssh-ed25519', 'ssh-rsa'),
      'KEY_INVALID',
    ],
    ['an OpenSSH private key', () => file('ed'), 'KEY_INVALID'],
    ['a PEM private key', () => file('o-ed.pem'), 'KEY_INVALID'],
    [
      'a JWK with its private part',
      async () =>
        JSON.stringify({
          ...createPublicKey(await file('o-ed.pub.pem')).export({ format: 'jwk' }),
          d: 'AAAA',
        }),
      'KEY_INVALID',
    ],
    ['an EC JWK', async () => '{"kty":"EC","crv":"P-256","x":"a","y":"b"}', 'KEY_TYPE_UNSUPPORTED'],
    ['broken JSON', async () => '{"kty":"OKP",', 'KEY_INVALID'],
    ['two keys at once', async () => `${await file('ed.pub')}${await file('rsa.pub')}`, 'KEY_INVALID'],
    ['nothing', async () => '  \n', 'KEY_INVALID'],
  ])('refuses %s with %s, without echoing it', async (_name, input, code) => {
    const text = await input();
    const r = refused(text);
    expect(r.code).toBe(code);
    expect(r.message).not.toMatch(/AAAA[A-Za-z0-9+/]{16}|-----BEGIN/);
  });

  it('names the .pub file when given a private key', async () => {
    expect(refused(await file('ed')).message).toMatch(/private key: give the public key/);
  });
});
