import { createPublicKey, type KeyObject } from 'node:crypto';
import { describeKey } from '../crypto/keys.js';
import {
  bcryptCostOf,
  classifyHash,
  dummyHash,
  type HashFormat,
  hashPassword,
  verifyPassword,
  verifyPasswordUniformly,
} from '../crypto/password.js';
import { jwkThumbprint } from '../crypto/thumbprint.js';
import { isTrustedMsError, TrustedMsError } from '../errors.js';
import type { StoreData, UserKey, UserRecord, UserRevocation } from '../store/schema.js';
import type { LabStore } from '../store/store.js';
import { parseHtpasswd } from './htpasswd.js';
import { assertUserName, isUserName } from './names.js';

/**
 * The user service. Every function takes the LabStore it works on and writes an audit entry for
 * each decision, success or refusal. Functions return stored records (with the password hash) for
 * other library code; anything shown or sent to a user goes through `toPublicUser`.
 */

/** A user as shown to callers: everything but the password hash. */
export interface PublicUser {
  name: string;
  role: string;
  /** Which scheme the stored password uses (`bcrypt` until an imported user first logs in). */
  passwordScheme: HashFormat;
  keys: UserKey[];
  createdAt: string;
  updatedAt: string;
  source?: 'cli' | 'htpasswd';
}

export interface ActorContext {
  /** Who is acting, for the audit log (default: `cli`, or `anonymous` for logins). */
  actor?: string;
}

export interface PasswordCheckOptions extends ActorContext {
  /**
   * The same work for every name, known or not, scrypt or imported bcrypt (verifyPasswordUniformly;
   * the limits:on defence): the answer's timing tells no one which names exist.
   */
  uniform?: boolean;
}

/** The cost of the lab's not yet upgraded bcrypt hashes (the highest), per store snapshot. */
const bcryptCosts = new WeakMap<StoreData, number | undefined>();
function labBcryptCost(data: StoreData): number | undefined {
  if (bcryptCosts.has(data)) return bcryptCosts.get(data);
  let cost: number | undefined;
  for (const u of Object.values(data.users)) {
    const c = bcryptCostOf(u.password);
    if (c !== undefined && (cost === undefined || c > cost)) cost = c;
  }
  // Only a frozen (resident) snapshot stays the same object while the store is unchanged.
  if (Object.isFrozen(data)) bcryptCosts.set(data, cost);
  return cost;
}

export interface NewUser {
  name: string;
  role: string;
  password: string;
}

export interface PasswordCheck {
  user: UserRecord;
  /** The stored hash was rehashed with the current scrypt parameters. */
  upgraded: boolean;
}

export function toPublicUser(record: UserRecord): PublicUser {
  const { password, keys, ...rest } = record;
  return { ...rest, passwordScheme: classifyHash(password), keys: keys.map((k) => ({ ...k })) };
}

// Store records are plain objects parsed from JSON: `users.constructor` must not count as a user.
function ownUser(data: StoreData, name: string): UserRecord | undefined {
  return Object.hasOwn(data.users, name) ? data.users[name] : undefined;
}

function requireUser(data: StoreData, name: string): UserRecord {
  const user = ownUser(data, name);
  if (!user) {
    throw new TrustedMsError('USER_NOT_FOUND', `no user named ${name}`, {
      actions: ['list users with `trusted-ms user list`'],
    });
  }
  return user;
}

function requireRole(data: StoreData, role: string): void {
  if (!Object.hasOwn(data.roles, role)) {
    const valid = Object.keys(data.roles).sort();
    throw new TrustedMsError(
      'ROLE_NOT_FOUND',
      `no role named ${JSON.stringify(role)}; valid roles: ${valid.length ? valid.join(', ') : '(none)'}`,
      { actions: ['list roles with `trusted-ms role list`'] },
    );
  }
}

function requireAbsent(data: StoreData, names: string[]): void {
  const existing = names.filter((n) => ownUser(data, n));
  if (existing.length === 1) {
    throw new TrustedMsError('USER_EXISTS', `user ${existing[0]} already exists`, {
      actions: ['pick another name, or remove the user first'],
    });
  }
  if (existing.length > 1) {
    throw new TrustedMsError('USER_EXISTS', `these users already exist: ${existing.join(', ')}`, {
      actions: ['remove them from the file or from the store first', 'nothing was imported'],
    });
  }
}

function auditTarget(name: unknown): string | undefined {
  return typeof name === 'string' && name !== '' ? name.slice(0, 64) : undefined;
}

/** Runs `fn` and records its outcome; a failure is recorded with its code and rethrown. */
async function audited<R>(
  store: LabStore,
  entry: { actor: string; action: string; target?: string | undefined },
  fn: () => Promise<R>,
  detail?: (result: R) => Record<string, unknown>,
): Promise<R> {
  const base = {
    actor: entry.actor,
    action: entry.action,
    ...(entry.target ? { target: entry.target } : {}),
  };
  let result: R;
  try {
    result = await fn();
  } catch (err) {
    const code = isTrustedMsError(err) ? err.code : 'INTERNAL';
    // Report the original error even if the audit log cannot be written.
    await store.audit({ ...base, outcome: 'error', code }).catch(() => undefined);
    throw err;
  }
  await store.auditRequired({ ...base, outcome: 'ok', ...(detail ? { detail: detail(result) } : {}) });
  return result;
}

export async function addUser(store: LabStore, input: NewUser, ctx: ActorContext = {}): Promise<UserRecord> {
  const { name, role } = input;
  return audited(
    store,
    { actor: ctx.actor ?? 'cli', action: 'user.add', target: auditTarget(name) },
    async () => {
      assertUserName(name);
      // Fail fast on a snapshot, then hash outside the lock: the lock is held only for the write.
      const snapshot = await store.data();
      requireRole(snapshot, role);
      requireAbsent(snapshot, [name]);
      const password = await hashPassword(input.password);
      return store.update((data) => {
        requireRole(data, role);
        requireAbsent(data, [name]);
        const now = store.now().toISOString();
        const record: UserRecord = {
          name,
          role,
          password,
          keys: [],
          createdAt: now,
          updatedAt: now,
          source: 'cli',
        };
        data.users[name] = record;
        clearLoginBan(data, name, store.now());
        return record;
      });
    },
    (user) => ({ role: user.role }),
  );
}

/** How long the revocation record of a removed user is kept: a day, well past any ticket of it (1 h). */
export const REMOVED_USER_RECORD_SECONDS = 24 * 3600;

/**
 * A removed user's tickets must not outlive it (they would work until expiry otherwise), and in
 * posture none its cached password check must go too: the user's revocation record is set as by
 * `user revoke`. A user added again under the name starts free to log in (clearLoginBan), while the
 * tickets from before stay refused by `notBefore`.
 */
function revokeTicketsOfRemoved(data: StoreData, name: string, at: Date): void {
  data.revocations ??= { users: {}, services: {} };
  const records = data.revocations.users;
  // Records of users long gone refuse nothing any more (their tickets expired: the lab's live an
  // hour) and would otherwise grow the published list with every `lab load` run's users.
  const stale = Math.floor(at.getTime() / 1000) - REMOVED_USER_RECORD_SECONDS;
  for (const [n, r] of Object.entries(records)) {
    if (!Object.hasOwn(data.users, n) && r.notBefore < stale) delete records[n];
  }
  records[name] = {
    name,
    revoked: true,
    notBefore: Math.floor(at.getTime() / 1000) + 1,
    revokedAt: at.toISOString(),
  };
}

/** A new user of a name starts with no ban from a removed one (see revokeTicketsOfRemoved). */
function clearLoginBan(data: StoreData, name: string, at: Date): void {
  const entry = data.revocations?.users[name];
  if (entry?.revoked) {
    entry.revoked = false;
    entry.reinstatedAt = at.toISOString();
  }
}

export async function removeUser(store: LabStore, name: string, ctx: ActorContext = {}): Promise<UserRecord> {
  return audited(
    store,
    { actor: ctx.actor ?? 'cli', action: 'user.remove', target: auditTarget(name) },
    () => {
      assertUserName(name);
      return store.update((data) => {
        const user = requireUser(data, name);
        delete data.users[name];
        revokeTicketsOfRemoved(data, name, store.now());
        return user;
      });
    },
  );
}

export async function getUser(store: LabStore, name: string): Promise<UserRecord> {
  assertUserName(name);
  return requireUser(await store.data(), name);
}

export async function listUsers(store: LabStore): Promise<UserRecord[]> {
  const data = await store.data();
  return Object.values(data.users).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

export async function addUserKey(
  store: LabStore,
  name: string,
  key: UserKey,
  ctx: ActorContext = {},
): Promise<UserRecord> {
  return audited(
    store,
    { actor: ctx.actor ?? 'cli', action: 'user.key.add', target: auditTarget(name) },
    () => {
      assertUserName(name);
      assertSoundUserKey(key);
      return store.update((data) => {
        const user = requireUser(data, name);
        if (user.keys.some((k) => k.thumbprint === key.thumbprint)) {
          throw new TrustedMsError('KEY_EXISTS', `user ${name} already has the key ${key.thumbprint}`, {
            actions: ['nothing to do: the key is registered'],
          });
        }
        if (user.keys.length >= MAX_USER_KEYS) {
          throw new TrustedMsError(
            'KEY_LIMIT_REACHED',
            `user ${name} has ${user.keys.length} keys, the most one user may have`,
            {
              actions: [`remove one first: trusted-ms user key remove ${name} -- <thumbprint>`],
            },
          );
        }
        user.keys.push({ ...key });
        user.updatedAt = store.now().toISOString();
        return user;
      });
    },
    () => ({ thumbprint: key.thumbprint, type: key.type }),
  );
}

/**
 * Refuses, from the next second on, every ticket of `name` bound to one of `thumbprints` (the user's
 * other keys and their tickets stay). Kept in the user's revocation record, like `user revoke`'s, so
 * that a restarted security service still publishes it; entries older than
 * REMOVED_USER_RECORD_SECONDS refuse nothing any more (tickets live an hour) and are dropped.
 */
function revokeKeyTickets(data: StoreData, name: string, thumbprints: string[], at: Date): number {
  const notBefore = Math.floor(at.getTime() / 1000) + 1;
  if (thumbprints.length === 0) return notBefore;
  data.revocations ??= { users: {}, services: {} };
  const records = data.revocations.users;
  const entry = Object.hasOwn(records, name) ? (records[name] as UserRevocation) : undefined;
  const record = entry ?? { name, revoked: false, notBefore: 0, revokedAt: at.toISOString() };
  const stale = notBefore - REMOVED_USER_RECORD_SECONDS;
  const keys = Object.fromEntries(Object.entries(record.keys ?? {}).filter(([, nb]) => nb >= stale));
  for (const t of thumbprints) keys[t] = notBefore;
  if (Object.keys(keys).length > REMOVED_KEYS_LISTED) {
    // Too many to list (the published list must stay small and valid: past its per-user bound
    // every revocation of the lab stopped, found by the red team): refuse every ticket of the user
    // issued until now instead, keys kept or not. Fails closed: the user logs in again.
    record.notBefore = Math.max(record.notBefore, notBefore);
    delete record.keys;
  } else {
    record.keys = keys;
  }
  records[name] = record;
  return notBefore;
}

/** Removed keys listed one by one per user; beyond, the user's tickets are refused all at once. */
export const REMOVED_KEYS_LISTED = 64;
/** Keys one user may have registered at once (a laptop, a token, a few spares). */
export const MAX_USER_KEYS = 32;

/** Unregisters one key of a user; the tickets bound to it are refused from then on (revokeKeyTickets). */
export async function removeUserKey(
  store: LabStore,
  name: string,
  thumbprint: string,
  ctx: ActorContext = {},
): Promise<{ user: UserRecord; removed: UserKey; notBefore: number }> {
  return audited(
    store,
    { actor: ctx.actor ?? 'cli', action: 'user.key.remove', target: auditTarget(name) },
    () => {
      assertUserName(name);
      return store.update((data) => {
        const user = requireUser(data, name);
        const removed = user.keys.find((k) => k.thumbprint === thumbprint);
        if (!removed) throw keyNotRegistered(user, thumbprint);
        const at = store.now();
        user.keys = user.keys.filter((k) => k !== removed);
        user.updatedAt = at.toISOString();
        const notBefore = revokeKeyTickets(data, name, [thumbprint], at);
        return { user, removed, notBefore };
      });
    },
    (r) => ({ thumbprint: r.removed.thumbprint, notBefore: r.notBefore }),
  );
}

/**
 * `user keygen --force`: the user's keys become `key` alone, in one locked update (never no key or
 * two), and the tickets bound to the keys it replaces are refused, as after `user key remove`.
 */
export async function replaceUserKeys(
  store: LabStore,
  name: string,
  key: UserKey,
  ctx: ActorContext = {},
): Promise<UserRecord> {
  return audited(
    store,
    { actor: ctx.actor ?? 'cli', action: 'user.key.replace', target: auditTarget(name) },
    () => {
      assertUserName(name);
      assertSoundUserKey(key);
      return store.update((data) => {
        const user = requireUser(data, name);
        const at = store.now();
        const gone = user.keys.map((k) => k.thumbprint).filter((t) => t !== key.thumbprint);
        user.keys = [{ ...key }];
        user.updatedAt = at.toISOString();
        revokeKeyTickets(data, name, gone, at);
        return user;
      });
    },
    () => ({ thumbprint: key.thumbprint }),
  );
}

/**
 * A key as it will be stored, checked where it is stored rather than trusted from the caller (the
 * admin API took a key labelled ed25519 that was RSA-1024, with a made-up thumbprint): its PEM
 * parses, is a sound Ed25519 or RSA key (describeKey), of the type it says, with its own thumbprint.
 */
export function assertSoundUserKey(key: UserKey): void {
  let parsed: KeyObject;
  try {
    parsed = createPublicKey(key.publicKeyPem);
  } catch {
    throw new TrustedMsError('KEY_INVALID', 'the public key does not parse');
  }
  const { type } = describeKey(parsed);
  if (type !== key.type || jwkThumbprint(parsed) !== key.thumbprint) {
    throw new TrustedMsError('KEY_INVALID', 'the key is not what its type and thumbprint say');
  }
}

/** KEY_NOT_FOUND naming the keys the user does have, so the fix is a copy and paste away. */
export function keyNotRegistered(user: UserRecord, thumbprint: string): TrustedMsError {
  const have = user.keys.map((k) => k.thumbprint);
  return new TrustedMsError(
    'KEY_NOT_FOUND',
    `${user.name} has no key with thumbprint ${thumbprint.slice(0, 64)}; registered: ${
      have.length ? have.join(', ') : '(none)'
    }`,
    { actions: [`list them with \`trusted-ms user key list ${user.name}\``] },
  );
}

/**
 * Imports the bcrypt entries of an Apache htpasswd file as users with `role`, all or nothing.
 * The bcrypt hashes are stored as they are and rehashed with scrypt at each user's first login.
 */
export async function importHtpasswd(
  store: LabStore,
  text: string,
  role: string,
  ctx: ActorContext = {},
): Promise<string[]> {
  return audited(
    store,
    { actor: ctx.actor ?? 'cli', action: 'user.import-htpasswd' },
    () => {
      const entries = parseHtpasswd(text);
      const names = entries.map((e) => e.name);
      return store.update((data) => {
        requireRole(data, role);
        requireAbsent(data, names);
        const now = store.now().toISOString();
        for (const e of entries) {
          data.users[e.name] = {
            name: e.name,
            role,
            password: e.hash,
            keys: [],
            createdAt: now,
            updatedAt: now,
            source: 'htpasswd',
          };
          clearLoginBan(data, e.name, store.now());
        }
        return names;
      });
    },
    (names) => ({ role, users: names }),
  );
}

function authFailed(): TrustedMsError {
  // The same message for an unknown user and a wrong password.
  return new TrustedMsError('AUTH_FAILED', 'authentication failed', {
    actions: ['check the user name and password'],
  });
}

/**
 * Checks a user's password. An unknown user and a wrong password give the same AUTH_FAILED, and an
 * unknown user still costs one scrypt verification. On success, a hash in an older scheme or with
 * weaker parameters (an imported bcrypt hash) is replaced by a current scrypt hash.
 */
export async function checkPassword(
  store: LabStore,
  name: string,
  password: string,
  ctx: PasswordCheckOptions = {},
): Promise<PasswordCheck> {
  const base = { actor: ctx.actor ?? 'anonymous', action: 'auth.password', target: auditTarget(name) };
  const deny = async (reason: string): Promise<never> => {
    await store
      .audit({ ...base, outcome: 'denied', code: 'AUTH_FAILED', detail: { reason } })
      .catch(() => undefined);
    throw authFailed();
  };

  const data = await store.data();
  const record = isUserName(name) ? ownUser(data, name) : undefined;
  if (ctx.uniform === true) {
    const result = await verifyPasswordUniformly(password, record?.password, labBcryptCost(data));
    if (!record) return deny('unknown user');
    if (!result.ok) return deny('wrong password');
    return granted(store, name, password, record, result.needsUpgrade, base);
  }
  if (!record) {
    await verifyPassword(password, dummyHash());
    return deny('unknown user');
  }
  const result = await verifyPassword(password, record.password);
  if (!result.ok) return deny('wrong password');
  return granted(store, name, password, record, result.needsUpgrade, base);
}

/** A right password: an imported hash upgraded to scrypt, and the login audited (required). */
async function granted(
  store: LabStore,
  name: string,
  password: string,
  record: UserRecord,
  needsUpgrade: boolean,
  base: { actor: string; action: string; target: string | undefined },
): Promise<PasswordCheck> {
  let upgraded = false;
  let user = record;
  if (needsUpgrade) {
    const newHash = await hashPassword(password);
    const oldHash = record.password;
    user = await store.update((data) => {
      const current = ownUser(data, name);
      // Changed or removed meanwhile: leave it, the login itself was valid.
      if (!current || current.password !== oldHash) return current ?? record;
      current.password = newHash;
      current.updatedAt = store.now().toISOString();
      upgraded = true;
      return current;
    });
  }
  // Fail closed: a login that cannot be audited is not granted.
  await store.auditRequired({ ...base, outcome: 'allowed', ...(upgraded ? { detail: { upgraded } } : {}) });
  return { user, upgraded };
}
