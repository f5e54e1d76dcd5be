import { createPrivateKey, type KeyObject } from 'node:crypto';
import { createRequire } from 'node:module';
import { TrustedMsError } from '../errors.js';

/**
 * OpenSSH-format private keys (`-----BEGIN OPENSSH PRIVATE KEY-----`, what `ssh-keygen` writes),
 * which node:crypto cannot read: parsed by the `ssh2` package (the one dockerode uses), which also
 * decrypts them (bcrypt-pbkdf + AES) and hands back a PKCS#8 PEM that node:crypto takes.
 */

/** The part of ssh2's parsed key this module uses. */
export interface Ssh2ParsedKey {
  type: string;
  isPrivateKey(): boolean;
  getPrivatePEM(): string;
  getPublicSSH(): Buffer;
}

export interface Ssh2 {
  utils: { parseKey(data: string | Buffer, passphrase?: string): Ssh2ParsedKey | Error };
  OpenSSHAgent: new (
    socketPath: string,
  ) => {
    getIdentities(cb: (err: Error | null | undefined, keys?: Ssh2ParsedKey[]) => void): void;
    sign(
      pubKey: Ssh2ParsedKey,
      data: Buffer,
      options: Record<string, unknown>,
      cb: (err: Error | null | undefined, sig?: Buffer) => void,
    ): void;
  };
}

let loaded: Ssh2 | undefined;
/** Loaded on first use: only `user login` with an OpenSSH key or ssh-agent needs it. */
export function ssh2(): Ssh2 {
  loaded ??= createRequire(import.meta.url)('ssh2') as Ssh2;
  return loaded;
}

export const OPENSSH_PRIVATE_RE = /-----BEGIN OPENSSH PRIVATE KEY-----/;

/**
 * Parses an OpenSSH private key; `passphrase` is asked only when the key is encrypted. Messages
 * name the file and the fix, never the key or the passphrase.
 */
export async function parseOpenSshPrivateKey(
  text: string,
  path: string,
  passphrase?: () => Promise<string>,
): Promise<KeyObject> {
  const { parseKey } = ssh2().utils;
  let parsed = parseKey(text);
  if (parsed instanceof Error && /no passphrase given/i.test(parsed.message)) {
    if (passphrase === undefined) throw passphraseRequired(path);
    parsed = parseKey(text, await passphrase());
    if (parsed instanceof Error && /bad passphrase|integrity check failed/i.test(parsed.message)) {
      throw new TrustedMsError('KEY_PASSPHRASE_WRONG', `the passphrase does not open ${path}`, {
        actions: ['check the passphrase (ssh-keygen -y -f <key> asks for it too)'],
      });
    }
  }
  if (parsed instanceof Error || !parsed.isPrivateKey()) {
    throw new TrustedMsError('KEY_INVALID', `${path} does not hold a valid OpenSSH private key`);
  }
  if (parsed.type !== 'ssh-ed25519' && parsed.type !== 'ssh-rsa') {
    throw new TrustedMsError(
      'KEY_TYPE_UNSUPPORTED',
      `${path} holds an ${parsed.type} key: use ed25519 or rsa (2048 bits or more)`,
      { actions: ['make one with `ssh-keygen -t ed25519`'] },
    );
  }
  try {
    return createPrivateKey(parsed.getPrivatePEM());
  } catch (cause) {
    throw new TrustedMsError('KEY_INVALID', `${path} does not hold a valid OpenSSH private key`, { cause });
  }
}

export function passphraseRequired(path: string): TrustedMsError {
  return new TrustedMsError('KEY_PASSPHRASE_REQUIRED', `${path} is encrypted and no passphrase was given`, {
    actions: [
      'run in a terminal to be asked for it, or pipe it in with --passphrase-stdin',
      'or let ssh-agent hold the key (ssh-add, then --agent)',
    ],
  });
}
