import { createPrivateKey, createPublicKey, generateKeyPair, type KeyObject, randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { chmod, type FileHandle, link, lstat, mkdir, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join, relative, sep } from 'node:path';
import { promisify } from 'node:util';
import { fileError } from '../disk-errors.js';
import { errnoCode, isTrustedMsError, TrustedMsError } from '../errors.js';
import { makeDir, syncDir } from '../fs-sync.js';
import { OPENSSH_PRIVATE_RE, parseOpenSshPrivateKey, passphraseRequired } from './openssh.js';
import { readSecretFile } from './secret-file.js';
import { MIN_RSA_BITS } from './signature.js';
import { jwkThumbprint } from './thumbprint.js';

export type KeyType = 'ed25519' | 'rsa';
export const KEY_TYPES: readonly KeyType[] = ['ed25519', 'rsa'];
export const RSA_KEY_SIZES = [2048, 3072, 4096] as const;
export const DEFAULT_RSA_BITS = 2048;

export interface UserKeyPair {
  type: KeyType;
  /** RSA modulus length; absent for Ed25519. */
  bits?: number;
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** SPKI PEM, what the security service registers. */
  publicKeyPem: string;
  /** RFC 7638 SHA-256 thumbprint of the public key, base64url. */
  thumbprint: string;
}

/** A PEM private key file is a few KiB at most; anything much larger is not a key. */
const MAX_KEY_FILE_BYTES = 64 * 1024;

const generateKeyPairAsync = promisify(generateKeyPair);

export async function generateUserKeyPair(type: KeyType = 'ed25519', bits?: number): Promise<UserKeyPair> {
  if (!KEY_TYPES.includes(type)) {
    throw new TrustedMsError('INVALID_INPUT', `unknown key type "${String(type)}": use ed25519 or rsa`);
  }
  let privateKey: KeyObject;
  let publicKey: KeyObject;
  if (type === 'ed25519') {
    if (bits !== undefined) {
      throw new TrustedMsError('INVALID_INPUT', 'ed25519 keys have a fixed size: do not give bits', {
        actions: ['drop --bits, or use --type rsa'],
      });
    }
    ({ privateKey, publicKey } = await generateKeyPairAsync('ed25519'));
  } else {
    const size = bits ?? DEFAULT_RSA_BITS;
    if (!(RSA_KEY_SIZES as readonly number[]).includes(size)) {
      throw new TrustedMsError(
        'INVALID_INPUT',
        `RSA key size ${String(size)} is not supported: use one of ${RSA_KEY_SIZES.join(', ')}`,
      );
    }
    ({ privateKey, publicKey } = await generateKeyPairAsync('rsa', {
      modulusLength: size,
      publicExponent: 0x10001,
    }));
  }
  return {
    type,
    ...(type === 'rsa' ? { bits: publicKey.asymmetricKeyDetails?.modulusLength } : {}),
    privateKey,
    publicKey,
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    thumbprint: jwkThumbprint(publicKey),
  };
}

/**
 * The type (and RSA size) of a key we accept for users: Ed25519, or RSA of 2048 bits and more.
 * Anything else (EC, RSA-PSS-only keys, DSA, short RSA, secret keys) is KEY_TYPE_UNSUPPORTED.
 */
export function describeKey(key: KeyObject): { type: KeyType; bits?: number } {
  if (key.type === 'secret') {
    throw new TrustedMsError('KEY_TYPE_UNSUPPORTED', 'a secret key is not a user key: use ed25519 or rsa');
  }
  if (key.asymmetricKeyType === 'ed25519') {
    assertFullOrderEd25519(key);
    return { type: 'ed25519' };
  }
  if (key.asymmetricKeyType === 'rsa') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS) {
      throw new TrustedMsError(
        'KEY_TYPE_UNSUPPORTED',
        `RSA-${bits} keys are too short: RSA keys must have at least ${MIN_RSA_BITS} bits`,
        { actions: ['generate a new key with `trusted-ms user keygen`'] },
      );
    }
    assertSoundRsa(key);
    return { type: 'rsa', bits };
  }
  throw new TrustedMsError(
    'KEY_TYPE_UNSUPPORTED',
    `unsupported key type ${key.asymmetricKeyType ?? 'unknown'}: use ed25519 or rsa (2048 bits or more)`,
  );
}

/**
 * Ed25519 public keys of small order (libsodium's `has_small_order` list, the sign bit ignored):
 * for these, a constant "signature" verifies for every message (found by the red team: the
 * identity point registered as a key let a user in with the password alone).
 */
const SMALL_ORDER_ED25519 = [
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
].map((h) => Buffer.from(h, 'hex'));

function assertFullOrderEd25519(key: KeyObject): void {
  const x = Buffer.from(String(key.export({ format: 'jwk' }).x ?? ''), 'base64url');
  const masked = Buffer.from(x);
  if (masked.length === 32) masked[31] = (masked[31] as number) & 0x7f;
  if (x.length !== 32 || SMALL_ORDER_ED25519.some((bad) => bad.equals(masked))) {
    throw new TrustedMsError(
      'KEY_INVALID',
      'this Ed25519 key is a point of small order: no signature made with it means anything',
      {
        actions: ['use a key made by ssh-keygen, openssl or `trusted-ms user keygen`'],
      },
    );
  }
}

/**
 * RSA as FIPS 186-5 has it: an odd modulus and an odd public exponent 2^16 < e < 2^256. With e = 1
 * a signature is the encoded message itself (the red team forged one), an even e or modulus is no
 * RSA key, and every key ssh-keygen and openssl make has e = 65537.
 */
function assertSoundRsa(key: KeyObject): void {
  const jwk = key.export({ format: 'jwk' });
  const n = Buffer.from(String(jwk.n ?? ''), 'base64url');
  const e = BigInt(`0x${Buffer.from(String(jwk.e ?? ''), 'base64url').toString('hex') || '0'}`);
  const oddModulus = n.length > 0 && ((n[n.length - 1] as number) & 1) === 1;
  if (!oddModulus || e % 2n === 0n || e <= 65536n || e >= 2n ** 256n) {
    throw new TrustedMsError(
      'KEY_INVALID',
      'this RSA key is not sound: the modulus and public exponent must be odd, with 2^16 < e < 2^256 (FIPS 186-5)',
      { actions: ['use a key made by ssh-keygen, openssl or `trusted-ms user keygen` (e = 65537)'] },
    );
  }
}

/** `<keyDir>/<user>.pem`; the user name must be a plain file name (no separators, not hidden). */
export function privateKeyPath(keyDir: string, user: string): string {
  if (
    user.length === 0 ||
    user.startsWith('.') ||
    user.includes('/') ||
    user.includes('\\') ||
    user.includes('\0')
  ) {
    throw new TrustedMsError('INVALID_NAME', `"${user}" cannot name a key file`);
  }
  return join(keyDir, `${user}.pem`);
}

/**
 * Writes a private key as PKCS#8 PEM, readable by its owner only from the moment it exists: a temp
 * file created with mode 0600 in the same folder, fsynced, then moved into place. Without
 * `overwrite`, an existing file is refused (KEY_EXISTS), and the final step is a hard link, which
 * cannot clobber a file that appeared in the meantime. A missing parent folder is created 0700.
 */
export async function writePrivateKeyFile(
  path: string,
  privateKey: KeyObject,
  opts: { overwrite?: boolean } = {},
): Promise<void> {
  if (privateKey.type !== 'private') {
    throw new TrustedMsError('KEY_INVALID', 'only a private key can be written to a private key file');
  }
  describeKey(privateKey);
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' });
  const overwrite = opts.overwrite === true;
  const dir = dirname(path);
  const exists = (): TrustedMsError =>
    new TrustedMsError('KEY_EXISTS', `a key file already exists at ${path}`, {
      actions: ['use --force to replace it'],
    });

  await ensurePrivateDir(dir, path);
  if (!overwrite && (await pathExists(path))) throw exists();

  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  let handle: FileHandle | undefined;
  try {
    handle = await open(tmp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
    await handle.chmod(0o600); // the umask can only narrow 0600, but be explicit
    await handle.writeFile(pem);
    await handle.sync();
    await handle.close();
    handle = undefined;
    if (overwrite) {
      await rename(tmp, path);
    } else {
      await linkNoClobber(tmp, path, exists);
    }
  } catch (err) {
    await handle?.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    if (err instanceof TrustedMsError) throw err;
    throw writeError(path, err);
  }
  await syncDir(dir);
}

/**
 * Loads a user's private key, with ssh's checks: the file must exist, be a regular file readable
 * by us, not be accessible by group or others, hold a PEM (PKCS#8, PKCS#1) or OpenSSH private key,
 * and be an Ed25519 or RSA (>= 2048 bits) key. An encrypted key is opened with `passphrase`, asked
 * only then. Messages name the file and the fix, never the key's content.
 */
export async function loadPrivateKeyFile(
  path: string,
  opts: { passphrase?: () => Promise<string> } = {},
): Promise<KeyObject> {
  const read = (shared: boolean) =>
    readSecretFile(path, {
      maxBytes: MAX_KEY_FILE_BYTES,
      notFound: () =>
        new TrustedMsError('KEY_NOT_FOUND', `no private key file at ${path}`, {
          actions: [
            'create one with `trusted-ms user keygen <user>`, or give your own with --key (or use --agent)',
          ],
        }),
      // A folder or a FIFO where the key should be: unreadable, not an invalid key.
      notRegularCode: 'KEY_UNREADABLE',
      shared,
    });
  let text: string;
  try {
    text = await read(false);
  } catch (err) {
    // A world-readable .pub given for the private key: "chmod 600" would be the wrong fix.
    if (!isTrustedMsError(err, 'KEY_PERMISSIONS_TOO_OPEN')) throw err;
    refusePublicKey(await read(true).catch(() => ''), path);
    throw err;
  }
  const key = await parsePrivateKeyText(text, path, opts.passphrase);
  describeKey(key);
  return key;
}

/**
 * Parses a public key in PEM (SPKI `PUBLIC KEY`, or PKCS#1 `RSA PUBLIC KEY`). Private keys and
 * certificates are refused even though node:crypto would derive a public key from them.
 */
export function parsePublicKeyPem(pem: string): KeyObject {
  if (typeof pem !== 'string' || pem.length > MAX_KEY_FILE_BYTES) {
    throw new TrustedMsError('KEY_INVALID', 'not a PEM public key');
  }
  if (/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(pem)) {
    throw new TrustedMsError('KEY_INVALID', 'this is a private key: give the public key instead', {
      actions: ['keep the private key secret and generate a new key pair if it was shared'],
    });
  }
  if (!/-----BEGIN (RSA )?PUBLIC KEY-----/.test(pem)) {
    throw new TrustedMsError('KEY_INVALID', 'not a PEM public key (expected a "PUBLIC KEY" PEM block)');
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch (cause) {
    throw new TrustedMsError('KEY_INVALID', 'not a valid PEM public key', { cause });
  }
  describeKey(key);
  return key;
}

/** A public key where a private key is needed: say where the private key is, and what else works. */
function refusePublicKey(text: string, path: string): void {
  if (
    /-----BEGIN (RSA )?PUBLIC KEY-----/.test(text) ||
    /^\s*(ssh-ed25519|ssh-rsa|ecdsa-[\w-]+) AAAA/.test(text)
  ) {
    throw new TrustedMsError('KEY_INVALID', `${path} holds a public key; logging in needs the private key`, {
      actions: [
        `give the private key file (for ssh-keygen keys, the one without .pub: ${path.replace(/\.pub$/, '')})`,
        'or keep the private key in ssh-agent and use --agent',
        'to register this public key: trusted-ms user key add <name> --public-key <file>',
      ],
    });
  }
}

async function parsePrivateKeyText(
  text: string,
  path: string,
  passphrase: (() => Promise<string>) | undefined,
): Promise<KeyObject> {
  refusePublicKey(text, path);
  if (OPENSSH_PRIVATE_RE.test(text)) {
    return parseOpenSshPrivateKey(text, path, passphrase);
  }
  if (!/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(text)) {
    throw new TrustedMsError('KEY_INVALID', `${path} does not hold a PEM or OpenSSH private key`);
  }
  const encrypted =
    /-----BEGIN ENCRYPTED PRIVATE KEY-----/.test(text) || /Proc-Type: *4, *ENCRYPTED/.test(text);
  if (encrypted && passphrase === undefined) throw passphraseRequired(path);
  // An empty passphrase makes an encrypted key fail instead of prompting or hanging.
  const secret = encrypted && passphrase !== undefined ? await passphrase() : '';
  try {
    return createPrivateKey({ key: text, format: 'pem', passphrase: secret });
  } catch (cause) {
    if (encrypted) {
      throw new TrustedMsError('KEY_PASSPHRASE_WRONG', `the passphrase does not open ${path}`, { cause });
    }
    throw new TrustedMsError('KEY_INVALID', `${path} does not hold a valid PEM private key`, { cause });
  }
}

/** Creates the key folder (and any missing parents) with mode 0700; leaves existing folders alone. */
async function ensurePrivateDir(dir: string, path: string): Promise<void> {
  let first: string | undefined;
  try {
    first = await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    // makeDir finds the real cause behind Node's ENOENT (a read-only or full disk).
    throw writeError(
      path,
      await makeDir(dir).then(
        () => err,
        (real: unknown) => real,
      ),
    );
  }
  if (first === undefined) return;
  // mkdir's mode is narrowed by the umask (good) but chmod anyway so the folder is exactly 0700.
  const parts = relative(first, dir).split(sep).filter(Boolean);
  let current = first;
  await chmod(current, 0o700);
  for (const part of parts) {
    current = join(current, part);
    await chmod(current, 0o700);
  }
}

async function pathExists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false;
    throw writeError(path, err);
  }
}

async function linkNoClobber(tmp: string, path: string, exists: () => TrustedMsError): Promise<void> {
  try {
    await link(tmp, path);
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'EEXIST') throw exists();
    // Some file systems have no hard links: fall back to a checked rename.
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw err;
    if (await pathExists(path)) throw exists();
    await rename(tmp, path);
    return;
  }
  await unlink(tmp);
}

function writeError(path: string, err: unknown): TrustedMsError {
  const code = errnoCode(err);
  if (code === 'EISDIR') {
    return new TrustedMsError('INVALID_INPUT', `${path} is a folder, not a key file path`);
  }
  return fileError(path, 'write the key file', err);
}
