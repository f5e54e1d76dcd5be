import { rm, stat } from 'node:fs/promises';
import { generateUserKeyPair, type KeyType, privateKeyPath, writePrivateKeyFile } from '../crypto/keys.js';
import { TrustedMsError } from '../errors.js';
import type { UserKey } from '../store/schema.js';
import type { UserAdmin } from './admin.js';

export interface KeygenResult {
  user: string;
  type: KeyType;
  bits?: number;
  thumbprint: string;
  privateKeyFile: string;
  replaced: boolean;
}

/**
 * Makes a key pair for a user: the private key goes to the user's key folder (0600) and never
 * into the store; the public key and its thumbprint are registered. With `force`, the key file is
 * replaced and the user's earlier public keys are unregistered, so the old private key stops working.
 */
export async function keygenForUser(
  admin: UserAdmin,
  opts: { user: string; type: KeyType; bits?: number; keyDir: string; force: boolean; now?: () => Date },
): Promise<KeygenResult> {
  await admin.getUser(opts.user);
  const file = privateKeyPath(opts.keyDir, opts.user);
  const existed = await stat(file).then(
    () => true,
    () => false,
  );
  if (existed && !opts.force) {
    throw new TrustedMsError('KEY_EXISTS', `a private key for ${opts.user} already exists at ${file}`, {
      actions: ['use --force to replace it (the old key is then unregistered)'],
    });
  }
  const pair = await generateUserKeyPair(opts.type, opts.bits);
  await writePrivateKeyFile(file, pair.privateKey, { overwrite: opts.force });
  const key: UserKey = {
    thumbprint: pair.thumbprint,
    type: pair.type,
    ...(pair.bits === undefined ? {} : { bits: pair.bits }),
    publicKeyPem: pair.publicKeyPem,
    createdAt: (opts.now ?? (() => new Date()))().toISOString(),
  };
  try {
    await admin.addKey(opts.user, key, opts.force);
  } catch (err) {
    // A private key whose public half is not registered would only confuse: take it back.
    if (!existed) await rm(file, { force: true });
    throw err;
  }
  return {
    user: opts.user,
    type: pair.type,
    ...(pair.bits === undefined ? {} : { bits: pair.bits }),
    thumbprint: pair.thumbprint,
    privateKeyFile: file,
    replaced: existed,
  };
}
