import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
} from 'node:crypto';
import { constants as fsConstants, realpathSync } from 'node:fs';
import { mkdir, open, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { errnoCode } from '../../errors.js';
import { type AuditCheckpoint, checkCheckpoint, invalidCheckpoint } from './checkpoint.js';
import { ioError } from './errors.js';

/**
 * Where a lab home's audit key and its signed checkpoints live: NOT in the lab home, but in the
 * user's key folder (`--key-dir`, `TRUSTED_MS_KEYS`, `~/.trusted-ms/keys`), beside the users'
 * private keys, at `<key folder>/audit/<first 16 hex of sha256(lab home)>/`:
 *
 *   key.pem            the Ed25519 audit key (0600), made by `lab up` on first use
 *   key.pub.pem        its public half, which `audit verify` checks signatures with
 *   checkpoints.jsonl  every checkpoint the security service signed (0600), one JSON per line
 *
 * Why there: the threat is an attacker who can write the lab home (a shared volume, a restored
 * backup, a process that was given the home and nothing else). Everything in the home can be
 * rewritten consistently by such an attacker, a recomputed hash chain included; the key folder is
 * the user's own, which the lab already assumes that attacker cannot reach (it holds the users'
 * private keys). What it does not stop: someone who can read the key folder can sign anything.
 */

export interface AuditKeyFiles {
  dir: string;
  privateFile: string;
  publicFile: string;
  checkpointsFile: string;
}

export function auditKeyFiles(keyDir: string, home: string): AuditKeyFiles {
  // The home's real path: the red team verified a rewritten log through a symlink to the home, found
  // no key under that name, and `audit verify` passed on the chain alone.
  const id = createHash('sha256').update(realHome(home)).digest('hex').slice(0, 16);
  return auditKeyFilesIn(join(resolve(keyDir), 'audit', id));
}

function realHome(home: string): string {
  try {
    return realpathSync(resolve(home));
  } catch {
    return resolve(home); // not made yet: `lab up` makes it, under this name
  }
}

/** The files of the audit folder `dir` (the folder of the security service's `auditKeyFile`). */
export function auditKeyFilesIn(dir: string): AuditKeyFiles {
  return {
    dir,
    privateFile: join(dir, 'key.pem'),
    publicFile: join(dir, 'key.pub.pem'),
    checkpointsFile: join(dir, 'checkpoints.jsonl'),
  };
}

/** The audit key pair, made once per lab home (kept across `lab up`s: old checkpoints stay checkable). */
export async function ensureAuditKey(files: AuditKeyFiles): Promise<void> {
  try {
    await readFile(files.privateFile);
    return;
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw ioError(files.privateFile, 'read', err);
  }
  await mkdir(files.dir, { recursive: true, mode: 0o700 }).catch((err: unknown) => {
    throw ioError(files.dir, 'create', err);
  });
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  // `wx`: two lab ups racing keep the first key; the second reads it next time.
  await writeFile(files.privateFile, privateKey.export({ format: 'pem', type: 'pkcs8' }), {
    mode: 0o600,
    flag: 'wx',
  }).catch((err: unknown) => {
    if (errnoCode(err) !== 'EEXIST') throw ioError(files.privateFile, 'create', err);
  });
  await writeFile(files.publicFile, publicKey.export({ format: 'pem', type: 'spki' }), { mode: 0o644 });
}

export async function loadAuditPrivateKey(file: string): Promise<KeyObject> {
  return createPrivateKey(await readFile(file, 'utf8'));
}

/** The audit public key, or undefined when this home has none (the lab ran without audit:signed). */
export async function loadAuditPublicKey(files: AuditKeyFiles): Promise<KeyObject | undefined> {
  let pem: string;
  try {
    pem = await readFile(files.publicFile, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw ioError(files.publicFile, 'read', err);
  }
  try {
    return createPublicKey(pem);
  } catch {
    throw invalidCheckpoint(`${files.publicFile} is not a public key`);
  }
}

/** Appends one checkpoint, fsynced before it resolves. */
export async function appendCheckpoint(file: string, c: AuditCheckpoint): Promise<void> {
  let handle: Awaited<ReturnType<typeof open>> | undefined;
  try {
    handle = await open(file, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_APPEND, 0o600);
    await handle.write(`${JSON.stringify(c)}\n`);
    await handle.sync();
  } catch (err) {
    throw ioError(file, 'append to', err);
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

/** Every checkpoint in the file, oldest first; [] when there is none. A cut last line is left out. */
export async function readCheckpoints(file: string): Promise<AuditCheckpoint[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return [];
    throw ioError(file, 'read', err);
  }
  const lines = text.split('\n');
  lines.pop();
  return lines.map((line, i) => {
    try {
      return checkCheckpoint(JSON.parse(line));
    } catch (err) {
      throw invalidCheckpoint(`${file} line ${i + 1}: ${(err as Error).message}`);
    }
  });
}
