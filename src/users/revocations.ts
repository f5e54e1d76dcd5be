import { TrustedMsError } from '../errors.js';
import type { RevocationRecords, StoreData } from '../store/schema.js';
import type { LabStore } from '../store/store.js';
import { assertUserName } from './names.js';

/**
 * Revocation and quarantine (docs/protocol.md, "Revocation and quarantine"): `user revoke`,
 * `user reinstate`, `service quarantine`, `service release`. Kept in the store (`revocations`), so
 * they survive a restart of the security service, and published to the gateway and the services as
 * one small list over a long poll (`GET /v1/revocations`): each part holds one request open and is
 * answered the moment the list changes, so a change reaches every part in one round trip without
 * anyone polling fast (idle, each part asks once per HOLD_MS).
 */

const SERVICE_RE = /^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

export interface Propagation {
  /** parts holding a long poll when the change was made */
  parts: number;
  /** of those, how many asked again with the new version (they apply a list before asking again) */
  confirmed: number;
  /** from the change being stored to the last confirmation (or the wait's end) */
  ms: number;
}

export interface UserRevocationResult {
  user: string;
  revoked: boolean;
  /** unix seconds: tickets of the user issued before are refused */
  notBefore: number;
  /** revoke: it was already revoked; reinstate: it was revoked */
  changed: boolean;
  propagation?: Propagation;
}

export interface QuarantineResult {
  service: string;
  quarantined: boolean;
  changed: boolean;
  propagation?: Propagation;
}

// ---- the store: used by the security service while the lab runs, by the CLI when it does not

function recordsOf(data: StoreData): RevocationRecords {
  data.revocations ??= { users: {}, services: {} };
  return data.revocations;
}

export function assertServiceName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || !SERVICE_RE.test(name)) {
    throw new TrustedMsError(
      'INVALID_NAME',
      `invalid service name ${JSON.stringify(String(name).slice(0, 64))}`,
    );
  }
}

/**
 * Revokes a user: no login from now on, and every ticket issued so far refused. `notBefore` is the
 * second after now, since a ticket's `iat` is in whole seconds: a ticket issued earlier in this very
 * second must be refused too.
 */
export async function revokeUserIn(
  store: LabStore,
  name: string,
  actor: string,
): Promise<UserRevocationResult> {
  assertUserName(name);
  const at = store.now();
  const result = await store.update((data) => {
    if (!Object.hasOwn(data.users, name)) {
      throw new TrustedMsError('USER_NOT_FOUND', `no user named ${name}`, {
        actions: ['list users with `trusted-ms user list`'],
      });
    }
    const users = recordsOf(data).users;
    const previous = Object.hasOwn(users, name) ? users[name] : undefined;
    const notBefore = Math.floor(at.getTime() / 1000) + 1;
    // The removed keys' entries stay: a later reinstatement must not bring their tickets back.
    users[name] = {
      ...(previous?.keys ? { keys: previous.keys } : {}),
      name,
      revoked: true,
      notBefore,
      revokedAt: at.toISOString(),
    };
    return { user: name, revoked: true, notBefore, changed: previous?.revoked !== true };
  });
  await store.audit({
    actor,
    action: 'user.revoke',
    target: name,
    outcome: 'ok',
    detail: { notBefore: result.notBefore },
  });
  return result;
}

/**
 * Lets a revoked user log in again. Tickets issued before the revocation stay refused (`notBefore`
 * stays): a reinstatement must not bring back a ticket that was stolen. Waits until `notBefore`
 * (at most a second after the revocation) so that a ticket issued right after it is not refused.
 */
export async function reinstateUserIn(
  store: LabStore,
  name: string,
  actor: string,
): Promise<UserRevocationResult> {
  assertUserName(name);
  const data = await store.data();
  const entry = data.revocations?.users[name];
  if (entry === undefined && !Object.hasOwn(data.users, name)) {
    throw new TrustedMsError('USER_NOT_FOUND', `no user named ${name}`, {
      actions: ['list users with `trusted-ms user list`'],
    });
  }
  if (entry !== undefined) {
    const wait = entry.notBefore * 1000 - store.now().getTime();
    if (wait > 0) await new Promise((r) => setTimeout(r, Math.min(wait, 1000)));
  }
  const result = await store.update((d) => {
    const users = recordsOf(d).users;
    const e = Object.hasOwn(users, name) ? users[name] : undefined;
    if (e === undefined) return { user: name, revoked: false, notBefore: 0, changed: false };
    const changed = e.revoked;
    e.revoked = false;
    if (changed) e.reinstatedAt = store.now().toISOString();
    return { user: name, revoked: false, notBefore: e.notBefore, changed };
  });
  await store.audit({
    actor,
    action: 'user.reinstate',
    target: name,
    outcome: 'ok',
    detail: { changed: result.changed },
  });
  return result;
}

export async function quarantineIn(store: LabStore, name: string, actor: string): Promise<QuarantineResult> {
  assertServiceName(name);
  const at = store.now().toISOString();
  const changed = await store.update((data) => {
    const services = recordsOf(data).services;
    if (Object.hasOwn(services, name)) return false;
    services[name] = { name, quarantinedAt: at };
    return true;
  });
  await store.audit({
    actor,
    action: 'service.quarantine',
    target: name,
    outcome: 'ok',
    detail: { changed },
  });
  return { service: name, quarantined: true, changed };
}

export async function releaseIn(store: LabStore, name: string, actor: string): Promise<QuarantineResult> {
  assertServiceName(name);
  const changed = await store.update((data) => {
    const services = recordsOf(data).services;
    if (!Object.hasOwn(services, name)) return false;
    delete services[name];
    return true;
  });
  await store.audit({ actor, action: 'service.release', target: name, outcome: 'ok', detail: { changed } });
  return { service: name, quarantined: false, changed };
}
