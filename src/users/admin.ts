import { type AdminChannel, adminChannel, requireAnswer } from '../kernel/admin-channel.js';
import { readLabState } from '../kernel/lab-state.js';
import { homeLabClockAtFirstUse } from '../store/lab-clock-mark.js';
import { openLabStore } from '../store/open.js';
import type { UserKey } from '../store/schema.js';
import type { LabStore } from '../store/store.js';
import { storeWriter } from './store-writer.js';
import {
  addUser,
  addUserKey,
  checkPassword,
  getUser,
  importHtpasswd,
  type NewUser,
  type PublicUser,
  removeUser,
  removeUserKey,
  replaceUserKeys,
  toPublicUser,
} from './users.js';

export interface KeyRemoval {
  user: PublicUser;
  removed: UserKey;
  /** unix seconds: tickets bound to the key issued before are refused */
  notBefore: number;
}

/**
 * Where user changes go: straight to the store (under its file lock) when no lab runs, or through
 * the security service's admin API while one does, since it is then the store's only writer.
 */
export interface UserAdmin {
  readonly via: 'store' | 'security-service';
  addUser(input: NewUser): Promise<PublicUser>;
  removeUser(name: string): Promise<PublicUser>;
  getUser(name: string): Promise<PublicUser>;
  /** `replace`: the user's keys become this one, and the others' tickets are refused */
  addKey(name: string, key: UserKey, replace: boolean): Promise<PublicUser>;
  /** Unregisters a key; the tickets bound to it are refused from `notBefore` on. */
  removeKey(name: string, thumbprint: string): Promise<KeyRemoval>;
  importHtpasswd(text: string, role: string): Promise<string[]>;
  /** AUTH_FAILED when wrong; a right bcrypt password is rehashed with scrypt (a write). */
  checkPassword(name: string, password: string): Promise<{ upgraded: boolean }>;
}

export async function openUserAdmin(home: string): Promise<UserAdmin> {
  const state = await readLabState(home);
  if (state && (await storeWriter(home, state)) === 'security-service') {
    return remoteAdmin(await adminChannel(home, state));
  }
  return localAdmin(openLabStore(home, { now: homeLabClockAtFirstUse(home) }));
}

function localAdmin(store: LabStore): UserAdmin {
  return {
    via: 'store',
    addUser: async (input) => toPublicUser(await addUser(store, input)),
    removeUser: async (name) => toPublicUser(await removeUser(store, name)),
    getUser: async (name) => toPublicUser(await getUser(store, name)),
    addKey: async (name, key, replace) =>
      toPublicUser(await (replace ? replaceUserKeys(store, name, key) : addUserKey(store, name, key))),
    removeKey: async (name, thumbprint) => {
      const r = await removeUserKey(store, name, thumbprint);
      return { user: toPublicUser(r.user), removed: { ...r.removed }, notBefore: r.notBefore };
    },
    importHtpasswd: (text, role) => importHtpasswd(store, text, role),
    checkPassword: async (name, password) => ({
      upgraded: (await checkPassword(store, name, password)).upgraded,
    }),
  };
}

const USER_FIELDS = { name: 'string', role: 'string' } as const;

function remoteAdmin(admin: AdminChannel): UserAdmin {
  const call = async <T>(
    path: string,
    method: 'GET' | 'POST' | 'DELETE',
    fields: Parameters<typeof requireAnswer>[1],
    body?: unknown,
  ): Promise<T> =>
    requireAnswer<T>(
      await admin.call(path, { method, ...(body === undefined ? {} : { body }) }),
      fields,
      `${method} ${path.replace(/\/[^/]*$/, '/…')}`,
    );
  const user = (name: string) => `/v1/admin/users/${encodeURIComponent(name)}`;
  return {
    via: 'security-service',
    addUser: (input) => call('/v1/admin/users', 'POST', USER_FIELDS, input),
    removeUser: (name) => call(user(name), 'DELETE', USER_FIELDS),
    getUser: (name) => call(user(name), 'GET', USER_FIELDS),
    addKey: (name, key, replace) => call(`${user(name)}/keys`, 'POST', USER_FIELDS, { key, replace }),
    removeKey: (name, thumbprint) =>
      call(`${user(name)}/keys/${encodeURIComponent(thumbprint)}`, 'DELETE', {
        user: 'object',
        removed: 'object',
        notBefore: 'number',
      }),
    importHtpasswd: async (text, role) =>
      (
        await call<{ imported: string[] }>(
          '/v1/admin/users/import',
          'POST',
          { imported: 'array' },
          { text, role },
        )
      ).imported,
    checkPassword: (name, password) =>
      call(`${user(name)}/check-password`, 'POST', { upgraded: 'boolean' }, { password }),
  };
}
