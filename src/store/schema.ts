import { TrustedMsError } from '../errors.js';
import type { Role } from '../policy/types.js';

/**
 * The shape of the lab's store files. `schemaVersion` is checked on every read: a file written by a
 * newer trusted-ms is refused (STORE_VERSION_UNSUPPORTED) rather than half-understood and rewritten;
 * an older one is migrated in memory (STORE_MIGRATIONS) and written in the new version at the next
 * change.
 *
 * 2: `revocations.users[name].keys`, the tickets refused per removed key (`user key remove`). Version
 *    1 had the same shape without it; it is bumped so that an older trusted-ms refuses the file
 *    instead of ignoring the key revocations and accepting tickets of a removed key.
 */
export const STORE_SCHEMA_VERSION = 2;
/** The audit log's files keep their own version: their shape did not change with the store's. */
export const AUDIT_SCHEMA_VERSION = 1;

export interface UserKey {
  /** SHA-256 thumbprint of the public key (as computed by the key module); unique per user. */
  thumbprint: string;
  type: 'ed25519' | 'rsa';
  bits?: number;
  publicKeyPem: string;
  createdAt: string;
}

export interface UserRecord {
  name: string;
  role: string;
  /** Self-describing hash: `$scrypt$ln=..,r=..,p=..$salt$hash`, or an imported `$2y$` bcrypt hash. */
  password: string;
  keys: UserKey[];
  createdAt: string;
  updatedAt: string;
  source?: 'cli' | 'htpasswd';
}

export type AttestationState = 'trusted' | 'untrusted' | 'unknown';

export interface ServiceRecord {
  name: string;
  expectedHash: string;
  registeredAt: string;
  /** The latest measurement and what it concluded (written by the security service). */
  attestation?: {
    state: AttestationState;
    measuredHash: string;
    measuredAt: string;
    measuredBy: 'runtime' | 'self';
    /** the start measured (PartState.launch), when the runtime named it */
    launch?: string;
  };
  /** starts replaced by a later one (newest last, a few): a report of one of them changes nothing */
  endedLaunches?: string[];
}

export interface StoreData {
  schemaVersion: typeof STORE_SCHEMA_VERSION;
  users: Record<string, UserRecord>;
  roles: Record<string, Role>;
  services: Record<string, ServiceRecord>;
  /** `user revoke` and `service quarantine` (src/services/security/revocations.ts); absent = none */
  revocations?: RevocationRecords;
}

export interface UserRevocation {
  name: string;
  /** true from `user revoke` until `user reinstate`: no login */
  revoked: boolean;
  /** unix seconds: a ticket of this user issued (`iat`) before it is refused, reinstated or not */
  notBefore: number;
  revokedAt: string;
  reinstatedAt?: string;
  /**
   * thumbprint → unix seconds: a ticket bound to that key (`cnf.jkt`) issued before it is refused
   * (`user key remove`); so is a ticket bound to no key (paper), which cannot show it was not that key's.
   */
  keys?: Record<string, number>;
}

export interface ServiceQuarantine {
  name: string;
  quarantinedAt: string;
}

export interface RevocationRecords {
  users: Record<string, UserRevocation>;
  services: Record<string, ServiceQuarantine>;
}

export const AUDIT_OUTCOMES = ['allowed', 'denied', 'ok', 'error'] as const;
export type AuditOutcome = (typeof AUDIT_OUTCOMES)[number];

export interface AuditEntry {
  at: string;
  actor: string;
  action: string;
  target?: string;
  outcome: AuditOutcome;
  code?: string;
  detail?: Record<string, unknown>;
}

export interface AuditData {
  schemaVersion: typeof AUDIT_SCHEMA_VERSION;
  entries: AuditEntry[];
}

export function emptyStoreData(roles: Record<string, Role> = {}): StoreData {
  return { schemaVersion: STORE_SCHEMA_VERSION, users: {}, roles, services: {} };
}

export function emptyAuditData(): AuditData {
  return { schemaVersion: AUDIT_SCHEMA_VERSION, entries: [] };
}

/** Checks a parsed file against one of the shapes above; throws STORE_CORRUPT / STORE_VERSION_UNSUPPORTED. */
export type Validator<T> = (raw: unknown, file: string) => T;

// ---- the validator: enough to refuse a file that is not ours, not a full JSON Schema ----

type Obj = Record<string, unknown>;

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A problem found at a JSON path, e.g. `users.alice.keys[0].thumbprint`. */
class ShapeError extends Error {}

function at(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

function fail(path: string, expected: string): never {
  throw new ShapeError(`${path || '(top level)'}: expected ${expected}`);
}

function obj(v: unknown, path: string): Obj {
  if (!isObject(v)) fail(path, 'an object');
  return v;
}

function str(o: Obj, key: string, path: string, optional = false): void {
  const v = o[key];
  if (v === undefined && optional) return;
  if (typeof v !== 'string') fail(at(path, key), 'a string');
}

function arr(o: Obj, key: string, path: string): unknown[] {
  const v = o[key];
  if (!Array.isArray(v)) fail(at(path, key), 'an array');
  return v;
}

function oneOf(o: Obj, key: string, path: string, allowed: readonly string[], optional = false): void {
  const v = o[key];
  if (v === undefined && optional) return;
  if (typeof v !== 'string' || !allowed.includes(v)) fail(at(path, key), `one of ${allowed.join(', ')}`);
}

/** Each value of a record is an object whose `name` equals its key. */
function namedRecord(v: unknown, path: string, check: (o: Obj, path: string) => void): void {
  for (const [key, value] of Object.entries(obj(v, path))) {
    const p = `${path}.${key}`;
    const o = obj(value, p);
    if (o.name !== key) fail(`${p}.name`, `"${key}" (the record's key)`);
    check(o, p);
  }
}

function checkKey(v: unknown, path: string): void {
  const o = obj(v, path);
  str(o, 'thumbprint', path);
  oneOf(o, 'type', path, ['ed25519', 'rsa']);
  if (o.bits !== undefined && !Number.isInteger(o.bits)) fail(`${path}.bits`, 'an integer');
  str(o, 'publicKeyPem', path);
  str(o, 'createdAt', path);
}

function checkUser(o: Obj, path: string): void {
  str(o, 'role', path);
  str(o, 'password', path);
  for (const [i, k] of arr(o, 'keys', path).entries()) checkKey(k, `${path}.keys[${i}]`);
  str(o, 'createdAt', path);
  str(o, 'updatedAt', path);
  oneOf(o, 'source', path, ['cli', 'htpasswd'], true);
}

function checkRole(o: Obj, path: string): void {
  str(o, 'description', path, true);
  arr(o, 'grants', path).forEach((g, i) => {
    const gp = `${path}.grants[${i}]`;
    const go = obj(g, gp);
    str(go, 'database', gp);
    if (!Array.isArray(go.actions) || !go.actions.every((a) => typeof a === 'string')) {
      fail(`${gp}.actions`, 'an array of strings');
    }
  });
}

function checkService(o: Obj, path: string): void {
  str(o, 'expectedHash', path);
  str(o, 'registeredAt', path);
}

function checkUserRevocation(o: Obj, path: string): void {
  if (typeof o.revoked !== 'boolean') fail(`${path}.revoked`, 'a boolean');
  if (!Number.isSafeInteger(o.notBefore)) fail(`${path}.notBefore`, 'an integer');
  str(o, 'revokedAt', path);
  str(o, 'reinstatedAt', path, true);
  if (o.keys !== undefined) {
    for (const [t, nb] of Object.entries(obj(o.keys, `${path}.keys`))) {
      if (!Number.isSafeInteger(nb)) fail(`${path}.keys.${t}`, 'an integer');
    }
  }
}

export function checkAuditEntry(v: unknown, path: string): void {
  const o = obj(v, path);
  str(o, 'at', path);
  str(o, 'actor', path);
  str(o, 'action', path);
  str(o, 'target', path, true);
  oneOf(o, 'outcome', path, AUDIT_OUTCOMES);
  str(o, 'code', path, true);
  if (o.detail !== undefined) obj(o.detail, `${path}.detail`);
}

function corrupt(file: string, why: string): TrustedMsError {
  return new TrustedMsError('STORE_CORRUPT', `${file} is not a trusted-ms store file: ${why}`, {
    actions: [
      `restore ${file} from a backup, or move it away to start with an empty store`,
      'the file was left untouched',
    ],
  });
}

/** The common envelope: an object with a supported integer `schemaVersion`. */
function checkVersion(raw: unknown, file: string, current: number): Obj {
  if (!isObject(raw)) throw corrupt(file, 'expected a JSON object');
  const v = raw.schemaVersion;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
    throw corrupt(file, 'schemaVersion: expected a positive integer');
  }
  if (v > current) {
    throw new TrustedMsError(
      'STORE_VERSION_UNSUPPORTED',
      `${file} has schemaVersion ${v}; this trusted-ms reads up to ${current}`,
      { actions: ['upgrade trusted-ms to a version that wrote this file', 'the file was left untouched'] },
    );
  }
  return raw;
}

function withShape<T>(
  file: string,
  raw: unknown,
  current: number,
  check: (o: Obj) => void,
  migrate: (o: Obj) => Obj = (o) => o,
): T {
  const o = checkVersion(raw, file, current);
  try {
    check(o);
    return migrate(o) as T;
  } catch (err) {
    if (err instanceof ShapeError) throw corrupt(file, err.message);
    throw err;
  }
}

/**
 * Store migrations: entry `n` turns a checked version-`n` object into version `n + 1`. They work on
 * a copy; the file on disk changes only at the next write, in the current version.
 */
const STORE_MIGRATIONS: Record<number, (o: Obj) => Obj> = {
  // Same shape: only the version changes (see STORE_SCHEMA_VERSION).
  1: (o) => ({ ...o, schemaVersion: 2 }),
};

function migrateStore(o: Obj): Obj {
  let out = o;
  for (let v = out.schemaVersion as number; v < STORE_SCHEMA_VERSION; v += 1) {
    const step = STORE_MIGRATIONS[v];
    if (step === undefined) throw new ShapeError(`schemaVersion ${v}: no migration to ${v + 1}`);
    out = step(out);
  }
  return out;
}

export const validateStoreData: Validator<StoreData> = (raw, file) =>
  withShape<StoreData>(
    file,
    raw,
    STORE_SCHEMA_VERSION,
    (o) => {
      namedRecord(o.users, 'users', checkUser);
      namedRecord(o.roles, 'roles', checkRole);
      namedRecord(o.services, 'services', checkService);
      if (o.revocations !== undefined) {
        const r = obj(o.revocations, 'revocations');
        namedRecord(r.users, 'revocations.users', checkUserRevocation);
        namedRecord(r.services, 'revocations.services', (q, p) => str(q, 'quarantinedAt', p));
      }
    },
    migrateStore,
  );

export const validateAuditData: Validator<AuditData> = (raw, file) =>
  withShape<AuditData>(file, raw, AUDIT_SCHEMA_VERSION, (o) => {
    for (const [i, e] of arr(o, 'entries', '').entries()) checkAuditEntry(e, `entries[${i}]`);
  });
