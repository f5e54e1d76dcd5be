import { execFileSync } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPrivateKeyFile } from '../../../src/crypto/keys.js';
import { parsePublicKeyInput } from '../../../src/crypto/public-key-input.js';
import { jwkThumbprint } from '../../../src/crypto/thumbprint.js';
import { isTrustedMsError, type TrustedMsError } from '../../../src/errors.js';

/** OpenSSH private keys as ssh-keygen writes them, loaded for `user login --key`. */

let dir: string;
const at = (name: string) => join(dir, name);
const keygen = (...args: string[]) =>
  execFileSync('ssh-keygen', ['-q', ...args], { cwd: dir, stdio: 'pipe' });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tms-openssh-'));
  keygen('-t', 'ed25519', '-N', '', '-f', 'ed');
  keygen('-t', 'rsa', '-b', '2048', '-N', '', '-f', 'rsa');
  keygen('-t', 'ed25519', '-N', 'correct horse', '-f', 'enc');
  keygen('-t', 'ecdsa', '-N', '', '-f', 'ec');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function failure(fn: () => Promise<unknown>): Promise<TrustedMsError> {
  try {
    await fn();
  } catch (err) {
    if (isTrustedMsError(err)) return err;
    throw err;
  }
  throw new Error('expected a TrustedMsError');
}

const thumbprintOfPub = async (name: string) =>
  jwkThumbprint(parsePublicKeyInput(await readFile(at(`${name}.pub`), 'utf8')).key);

describe('loadPrivateKeyFile with OpenSSH keys', () => {
  it.each(['ed', 'rsa'])('loads the unencrypted %s key, the pair of its .pub', async (name) => {
    const key = await loadPrivateKeyFile(at(name));
    expect(key.type).toBe('private');
    expect(jwkThumbprint(key)).toBe(await thumbprintOfPub(name));
  });

  it('opens an encrypted key with its passphrase, asked only for it', async () => {
    let asked = 0;
    const key = await loadPrivateKeyFile(at('enc'), {
      passphrase: async () => {
        asked += 1;
        return 'correct horse';
      },
    });
    expect(asked).toBe(1);
    expect(jwkThumbprint(key)).toBe(await thumbprintOfPub('enc'));
    let askedPlain = 0;
    await loadPrivateKeyFile(at('ed'), {
      passphrase: async () => {
        askedPlain += 1;
        return 'x';
      },
    });
    expect(askedPlain).toBe(0);
  });

  it('an encrypted key without a passphrase: KEY_PASSPHRASE_REQUIRED naming --passphrase-stdin', async () => {
    const err = await failure(() => loadPrivateKeyFile(at('enc')));
    expect(err.code).toBe('KEY_PASSPHRASE_REQUIRED');
    expect(err.actions.join('\n')).toMatch(/--passphrase-stdin/);
  });

  it('a wrong passphrase: KEY_PASSPHRASE_WRONG, the passphrase not echoed', async () => {
    const err = await failure(() =>
      loadPrivateKeyFile(at('enc'), { passphrase: async () => 'battery staple' }),
    );
    expect(err.code).toBe('KEY_PASSPHRASE_WRONG');
    expect(err.message).not.toMatch(/battery/);
  });

  it('the .pub file given as the private key: KEY_INVALID naming the private file and --agent', async () => {
    const err = await failure(() => loadPrivateKeyFile(at('ed.pub')));
    expect(err.code).toBe('KEY_INVALID');
    expect(err.message).toMatch(/holds a public key/);
    expect(err.actions.join('\n')).toContain(at('ed'));
    expect(err.actions.join('\n')).toMatch(/--agent/);
  });

  it('an ECDSA key: KEY_TYPE_UNSUPPORTED', async () => {
    expect((await failure(() => loadPrivateKeyFile(at('ec')))).code).toBe('KEY_TYPE_UNSUPPORTED');
  });

  it('a damaged key: KEY_INVALID without echoing it', async () => {
    const text = await readFile(at('ed'), 'utf8');
    const lines = text.split('\n');
    lines.splice(2, 1);
    const { writeFile } = await import('node:fs/promises');
    await writeFile(at('damaged'), lines.join('\n'), { mode: 0o600 });
    const err = await failure(() => loadPrivateKeyFile(at('damaged')));
    expect(err.code).toBe('KEY_INVALID');
    expect(err.message).not.toMatch(/BEGIN|b3BlbnNzaC/);
  });

  it('a key readable by others: KEY_PERMISSIONS_TOO_OPEN with the chmod that fixes it', async () => {
    await chmod(at('rsa'), 0o644);
    try {
      const err = await failure(() => loadPrivateKeyFile(at('rsa')));
      expect(err.code).toBe('KEY_PERMISSIONS_TOO_OPEN');
      expect(err.message).toContain(`chmod 600 ${at('rsa')}`);
    } finally {
      await chmod(at('rsa'), 0o600);
    }
  });
});
