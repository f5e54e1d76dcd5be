import type { KeyObject } from 'node:crypto';
import { loadPrivateKeyFile, privateKeyPath } from '../crypto/keys.js';
import { jwkThumbprint } from '../crypto/thumbprint.js';
import { isTrustedMsError, TrustedMsError } from '../errors.js';
import { openLabStore } from '../store/open.js';
import type { StoreData } from '../store/schema.js';
import { agentSigner, type ChallengeSigner } from './ssh-agent.js';

/**
 * Which key `user login` signs with, and what to tell the user when the security service refuses
 * it. The lab's store is read (never written) for the user's registered thumbprints: to pick the
 * ssh-agent's key, and to explain a refused signature (another user's key, an unregistered one).
 */

export interface LoginSecrets {
  password: string | undefined;
  passphrase: string | undefined;
}

/**
 * `--password-stdin` and `--passphrase-stdin` together read two lines: the password, then the
 * key's passphrase. Alone, each takes the whole input, as before. `body` is standard input as
 * readPasswordFromStdin gives it (one trailing newline already removed).
 */
export function splitStdinSecrets(
  body: string,
  opts: { password: boolean; passphrase: boolean },
): LoginSecrets {
  if (opts.password && opts.passphrase) {
    const nl = body.indexOf('\n');
    if (nl < 0) {
      throw new TrustedMsError(
        'PASSWORD_REQUIRED',
        'standard input holds one line: give the password, then the passphrase, one per line',
      );
    }
    return { password: body.slice(0, nl).replace(/\r$/, ''), passphrase: body.slice(nl + 1) };
  }
  return { password: opts.password ? body : undefined, passphrase: opts.passphrase ? body : undefined };
}

async function storeData(home: string): Promise<StoreData | undefined> {
  return openLabStore(home)
    .data()
    .catch(() => undefined);
}

/** The user's registered thumbprints, or undefined when the store cannot be read here. */
export async function registeredThumbprints(home: string, user: string): Promise<string[] | undefined> {
  const data = await storeData(home);
  if (data === undefined || !Object.hasOwn(data.users, user)) return undefined;
  return data.users[user]?.keys.map((k) => k.thumbprint);
}

export async function resolveLoginKey(opts: {
  home: string;
  user: string;
  keyFile?: string | undefined;
  keyDir: string;
  agent: boolean;
  passphrase?: (() => Promise<string>) | undefined;
}): Promise<KeyObject | ChallengeSigner> {
  if (opts.agent) {
    return agentSigner({ user: opts.user, registered: await registeredThumbprints(opts.home, opts.user) });
  }
  const file = opts.keyFile ?? privateKeyPath(opts.keyDir, opts.user);
  return loadPrivateKeyFile(file, opts.passphrase === undefined ? {} : { passphrase: opts.passphrase });
}

export function thumbprintOf(key: KeyObject | ChallengeSigner): string {
  return 'thumbprint' in key ? key.thumbprint : jwkThumbprint(key);
}

/**
 * A SIGNATURE_INVALID from the security service says nothing, by design; the CLI, which can read
 * the lab's store, says which mistake it was when the key is the cause: a key of another user, or
 * a key not registered for this one (listing the registered thumbprints). Anything else is left as
 * it was.
 */
export async function explainRefusal(
  err: unknown,
  home: string,
  user: string,
  key: KeyObject | ChallengeSigner,
): Promise<unknown> {
  if (!isTrustedMsError(err, 'SIGNATURE_INVALID')) return err;
  const data = await storeData(home);
  const record = data && Object.hasOwn(data.users, user) ? data.users[user] : undefined;
  if (data === undefined || record === undefined) return err;
  const mine = thumbprintOf(key);
  if (record.keys.some((k) => k.thumbprint === mine)) return err;
  const owners = Object.values(data.users)
    .filter((u) => u.name !== user && u.keys.some((k) => k.thumbprint === mine))
    .map((u) => u.name);
  const registered = record.keys.map((k) => k.thumbprint);
  const listed = registered.length ? registered.join(', ') : '(none)';
  const message = owners.length
    ? `the key ${mine} is registered for ${owners.join(', ')}, not for ${user}; ${user}'s keys: ${listed}`
    : `the key ${mine} is not registered for ${user}; registered: ${listed}`;
  return new TrustedMsError('SIGNATURE_INVALID', message, {
    cause: err,
    actions: [
      `log in with one of ${user}'s keys (--key FILE, or --agent)`,
      `or register this one: trusted-ms user key add ${user} --public-key <its .pub file>`,
    ],
  });
}
