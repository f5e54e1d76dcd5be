import { createReadStream } from 'node:fs';
import {
  MAX_PUBLIC_KEY_INPUT_BYTES,
  type PublicKeyFormat,
  parsePublicKeyInput,
} from '../crypto/public-key-input.js';
import { jwkThumbprint } from '../crypto/thumbprint.js';
import { errnoCode, TrustedMsError } from '../errors.js';
import type { UserKey } from '../store/schema.js';
import type { KeyRemoval, UserAdmin } from './admin.js';

export interface KeyAddResult {
  user: string;
  thumbprint: string;
  type: UserKey['type'];
  bits?: number;
  /** the form the key was given in */
  format: PublicKeyFormat;
  /** every key the user now has */
  keys: string[];
}

/**
 * Registers a public key the user made elsewhere (ssh-keygen, openssl, a token): only the public
 * half ever reaches this code, so nothing secret is written. The user may already have other keys;
 * each is usable at login.
 */
export async function addPublicKey(
  admin: UserAdmin,
  user: string,
  text: string,
  now: () => Date = () => new Date(),
): Promise<KeyAddResult> {
  const { key, format } = parsePublicKeyInput(text);
  const thumbprint = jwkThumbprint(key);
  const type = key.asymmetricKeyType === 'rsa' ? 'rsa' : 'ed25519';
  const bits = type === 'rsa' ? key.asymmetricKeyDetails?.modulusLength : undefined;
  const record: UserKey = {
    thumbprint,
    type,
    ...(bits === undefined ? {} : { bits }),
    publicKeyPem: key.export({ type: 'spki', format: 'pem' }).toString(),
    createdAt: now().toISOString(),
  };
  const updated = await admin.addKey(user, record, false);
  return {
    user,
    thumbprint,
    type,
    ...(bits === undefined ? {} : { bits }),
    format,
    keys: updated.keys.map((k) => k.thumbprint),
  };
}

export async function removeKey(admin: UserAdmin, user: string, thumbprint: string): Promise<KeyRemoval> {
  return admin.removeKey(user, thumbprint);
}

/** A public key from a file, or from standard input for `-`; more than 64 KiB is not a key. */
export async function readPublicKeyInput(
  source: string,
  stdin: NodeJS.ReadableStream = process.stdin,
): Promise<string> {
  const what = source === '-' ? 'standard input' : source;
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of source === '-' ? stdin : createReadStream(source)) {
      const b = Buffer.from(chunk as Buffer);
      size += b.length;
      if (size > MAX_PUBLIC_KEY_INPUT_BYTES) {
        throw new TrustedMsError('KEY_INVALID', `${what} holds more than 64 KiB: not a public key`);
      }
      chunks.push(b);
    }
  } catch (err) {
    if (err instanceof TrustedMsError) throw err;
    const code = errnoCode(err);
    if (code === 'ENOENT') {
      throw new TrustedMsError('KEY_NOT_FOUND', `no file at ${source}`, {
        actions: ['give the public key file (e.g. ~/.ssh/id_ed25519.pub), or - to read standard input'],
      });
    }
    throw new TrustedMsError('KEY_UNREADABLE', `cannot read ${what} (${code ?? 'error'})`, { cause: err });
  }
  return Buffer.concat(chunks).toString('utf8');
}
