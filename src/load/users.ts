import { type KeyObject, randomBytes } from 'node:crypto';
import { generateUserKeyPair, type KeyType } from '../crypto/keys.js';
import type { Defences } from '../defences/presets.js';
import type { UserAdmin } from '../users/admin.js';

/** One virtual user of a load run: a real lab user with its own password and key pair. */
export interface VirtualUser {
  index: number;
  name: string;
  role: string;
  password: string;
  /** kept in memory only: a load user's private key is never written anywhere */
  privateKey: KeyObject;
}

/** The paper's login encrypts with an RSA private key; otherwise Ed25519 (cheap to make). */
export function loadKeyType(login: Defences['login']): KeyType {
  switch (login) {
    case 'paper':
      return 'rsa';
    case 'basic':
    case 'challenge':
      return 'ed25519';
  }
}

/** Runs `fn` over `items` with at most `limit` at a time, in order of the items. */
export async function eachLimited<T, R>(
  items: readonly T[],
  limit: number,
  fn: (x: T) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  // On the first failure no new item starts, and the error is passed on only once every item
  // already started has settled: a caller cleaning up after it then sees everything that was made.
  let failure: { error: unknown } | undefined;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (failure === undefined && next < items.length) {
        const i = next++;
        try {
          out[i] = await fn(items[i] as T);
        } catch (error) {
          failure ??= { error };
        }
      }
    }),
  );
  if (failure !== undefined) throw failure.error;
  return out;
}

/**
 * Creates `count` users named `load-<run>-<i>` through the lab's admin path (the security service
 * while the lab runs), roles round-robin, each with a fresh key pair whose public half is
 * registered. On a failure, the users made so far are removed before the error is passed on.
 */
export async function createVirtualUsers(
  admin: UserAdmin,
  opts: {
    count: number;
    roles: readonly string[];
    login: Defences['login'];
    runId?: string;
    concurrency?: number;
    onCreated?: (done: number) => void;
  },
): Promise<VirtualUser[]> {
  const runId = opts.runId ?? randomBytes(3).toString('hex');
  const type = loadKeyType(opts.login);
  const made: string[] = [];
  let done = 0;
  try {
    return await eachLimited(
      Array.from({ length: opts.count }, (_, i) => i),
      opts.concurrency ?? 8,
      async (index): Promise<VirtualUser> => {
        const name = `load-${runId}-${index}`;
        const role = opts.roles[index % opts.roles.length] as string;
        const password = randomBytes(12).toString('base64url');
        const pair = await generateUserKeyPair(type);
        await admin.addUser({ name, role, password });
        made.push(name);
        await admin.addKey(
          name,
          {
            thumbprint: pair.thumbprint,
            type: pair.type,
            ...(pair.bits === undefined ? {} : { bits: pair.bits }),
            publicKeyPem: pair.publicKeyPem,
            createdAt: new Date().toISOString(),
          },
          false,
        );
        opts.onCreated?.(++done);
        return { index, name, role, password, privateKey: pair.privateKey };
      },
    );
  } catch (err) {
    await removeVirtualUsers(admin, made);
    throw err;
  }
}

/** Removes the load's users; returns how many were removed (a user already gone counts as removed). */
export async function removeVirtualUsers(admin: UserAdmin, names: readonly string[]): Promise<number> {
  const results = await eachLimited(names, 8, (name) =>
    admin.removeUser(name).then(
      () => true,
      (err: { code?: string }) => err?.code === 'USER_NOT_FOUND',
    ),
  );
  return results.filter(Boolean).length;
}
