import { TrustedMsError } from '../errors.js';

/**
 * The revocation list the security service publishes (`GET /v1/revocations`, docs/protocol.md,
 * "Revocation and quarantine") and the gateway and the services hold: revoked users and quarantined
 * services. Small by nature (one entry per revoked user or quarantined service), so it travels whole.
 */
export interface RevocationList {
  /** `<epoch>.<n>`: changes with every change, and with every start of the security service */
  version: string;
  /**
   * user → unix seconds: a ticket of the user issued (`iat`) before it is refused; `revoked`: no
   * login; `keys`: thumbprint → the same, for the tickets bound to one removed key (`user key remove`)
   */
  users: Record<string, UserEntry>;
  /** quarantined service names */
  quarantined: string[];
  /**
   * Services whose latest attestation did not pass (attestation enforced only): their peers refuse
   * them at once, whatever certificate they still hold, as the gateway refuses to route to them.
   */
  untrusted: string[];
}

export interface UserEntry {
  notBefore: number;
  revoked: boolean;
  keys?: Record<string, number>;
}

const THUMBPRINT_RE = /^[A-Za-z0-9_-]{43}$/;
const MAX_KEYS_PER_USER = 1000;
const VERSION_RE = /^[A-Za-z0-9_-]{1,32}\.[0-9]{1,15}$/;
const NAME_RE = /^[a-z][a-z0-9._-]{0,63}$/;
const MAX_ENTRIES = 100_000;

export function emptyRevocationList(): RevocationList {
  return { version: '', users: {}, quarantined: [], untrusted: [] };
}

/** Checks a list received over the network; INVALID_INPUT when it is not one. */
export function parseRevocationList(x: unknown): RevocationList {
  const bad = (why: string) => new TrustedMsError('INVALID_INPUT', `revocation list is invalid: ${why}`);
  if (typeof x !== 'object' || x === null) throw bad('not an object');
  const { version, users, quarantined, untrusted } = x as Record<string, unknown>;
  if (typeof version !== 'string' || !VERSION_RE.test(version)) throw bad('version');
  if (typeof users !== 'object' || users === null || Array.isArray(users)) throw bad('users');
  if (!Array.isArray(quarantined) || quarantined.length > MAX_ENTRIES) throw bad('quarantined');
  if (!Array.isArray(untrusted) || untrusted.length > MAX_ENTRIES) throw bad('untrusted');
  const outUsers: RevocationList['users'] = Object.create(null);
  const entries = Object.entries(users);
  if (entries.length > MAX_ENTRIES) throw bad('users');
  for (const [name, v] of entries) {
    const { notBefore, revoked, keys } = (v ?? {}) as Record<string, unknown>;
    if (!NAME_RE.test(name) || !Number.isSafeInteger(notBefore) || typeof revoked !== 'boolean') {
      throw bad(`user ${name.slice(0, 64)}`);
    }
    const entry: UserEntry = { notBefore: notBefore as number, revoked };
    if (keys !== undefined) {
      const pairs = typeof keys === 'object' && keys !== null ? Object.entries(keys) : undefined;
      if (pairs === undefined || Array.isArray(keys) || pairs.length > MAX_KEYS_PER_USER) {
        throw bad(`user ${name} keys`);
      }
      entry.keys = Object.create(null) as Record<string, number>;
      for (const [t, nb] of pairs) {
        if (!THUMBPRINT_RE.test(t) || !Number.isSafeInteger(nb)) throw bad(`user ${name} keys`);
        entry.keys[t] = nb as number;
      }
    }
    outUsers[name] = entry;
  }
  for (const q of [...quarantined, ...untrusted]) {
    if (typeof q !== 'string' || !NAME_RE.test(q)) throw bad('service name');
  }
  return {
    version,
    users: outUsers,
    quarantined: [...quarantined] as string[],
    untrusted: [...untrusted] as string[],
  };
}

/**
 * A part's current copy of the list, asked on every request (Map and Set lookups only). Replaced
 * whole by the feed (`src/services/revocation-feed.ts`).
 */
export class RevocationView {
  #version = '';
  #users = new Map<string, UserEntry>();
  #quarantined = new Set<string>();
  #untrusted = new Set<string>();

  get version(): string {
    return this.#version;
  }

  replace(list: RevocationList): void {
    this.#users = new Map(Object.entries(list.users));
    this.#quarantined = new Set(list.quarantined);
    this.#untrusted = new Set(list.untrusted);
    this.#version = list.version;
  }

  /**
   * The ticket was issued before its user's last revocation (whether or not reinstated since), or
   * before the removal of the key it is bound to. A ticket bound to no key (paper) falls with any
   * key of its user removed after it was issued: it cannot show which key it came from.
   */
  ticketRevoked(claims: { sub: string; iat: number; cnf?: { jkt: string } }): boolean {
    const u = this.#users.get(claims.sub);
    if (u === undefined) return false;
    if (u.revoked || claims.iat < u.notBefore) return true;
    if (u.keys === undefined) return false;
    const jkt = claims.cnf?.jkt;
    if (jkt !== undefined) return Object.hasOwn(u.keys, jkt) && claims.iat < (u.keys[jkt] as number);
    return Object.values(u.keys).some((nb) => claims.iat < nb);
  }

  /** The user may not log in (posture none: its cached password check no longer counts). */
  userRevoked(user: string): boolean {
    return this.#users.get(user)?.revoked === true;
  }

  quarantined(service: string): boolean {
    return this.#quarantined.has(service);
  }

  /** Its latest attestation did not pass: not to be served as a caller, whatever its certificate says. */
  untrusted(service: string): boolean {
    return this.#untrusted.has(service);
  }
}
