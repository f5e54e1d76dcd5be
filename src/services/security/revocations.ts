import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { TrustedMsError } from '../../errors.js';
import { parseRevocationList, type RevocationList } from '../../protocol/revocation-list.js';
import type { RevocationRecords, StoreData } from '../../store/schema.js';
import type { LabStore } from '../../store/store.js';
import { assertUserName } from '../../users/names.js';

/**
 * Revocation and quarantine (docs/protocol.md, "Revocation and quarantine"): `user revoke`,
 * `user reinstate`, `service quarantine`, `service release`. Kept in the store (`revocations`), so
 * they survive a restart of the security service, and published to the gateway and the services as
 * one small list over a long poll (`GET /v1/revocations`): each part holds one request open and is
 * answered the moment the list changes, so a change reaches every part in one round trip without
 * anyone polling fast (idle, each part asks once per HOLD_MS).
 */

/** How long a long poll is held when nothing changes. */
export const HOLD_MS = 20_000;
/** How long an admin change waits for the parts that were listening to confirm they hold it. */
export const CONFIRM_MS = 1000;
const SERVICE_RE = /^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
/** Part names remembered for confirmations (they are self-declared: bounded). */
const MAX_PARTS = 1000;
/** Polls held at once; beyond, answered at once (the lab has ~21 listeners; a flood must not pile up). */
const MAX_WAITERS = 1000;

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

// ---- the security service: the published list, its long poll, and who confirmed it

interface Waiter {
  part: string | undefined;
  done: (list: RevocationList) => void;
}

interface PendingConfirmation {
  n: number;
  expected: Set<string>;
  done: () => void;
}

/** The list as the security service publishes it, rebuilt from the store after every change. */
export class RevocationBook {
  readonly #store: LabStore;
  /** new at each start: a part holding an older list always gets the current one at once */
  readonly #epoch = randomBytes(6).toString('base64url');
  #n = 0;
  #list: RevocationList = { version: `${this.#epoch}.0`, users: {}, quarantined: [] };
  readonly #waiters = new Set<Waiter>();
  /** part → the highest version number it said it holds */
  readonly #held = new Map<string, number>();
  readonly #pending = new Set<PendingConfirmation>();

  constructor(store: LabStore) {
    this.#store = store;
  }

  /** Reads the store and publishes what it holds; call at start and after every change. */
  async load(): Promise<void> {
    const r = (await this.#store.data()).revocations;
    this.#n += 1;
    this.#list = parseRevocationList({
      version: `${this.#epoch}.${this.#n}`,
      users: Object.fromEntries(
        Object.values(r?.users ?? {}).map((u) => [
          u.name,
          { notBefore: u.notBefore, revoked: u.revoked, ...(u.keys ? { keys: u.keys } : {}) },
        ]),
      ),
      quarantined: Object.keys(r?.services ?? {}).sort(),
    });
  }

  list(): RevocationList {
    return this.#list;
  }

  /** Polls held open right now. */
  get listening(): number {
    return this.#waiters.size;
  }

  userRevoked(name: string): boolean {
    return Object.hasOwn(this.#list.users, name) && this.#list.users[name]?.revoked === true;
  }

  quarantined(name: string): boolean {
    return this.#list.quarantined.includes(name);
  }

  /** Re-reads the store, answers every held poll, and waits (≤ CONFIRM_MS) for their confirmations. */
  async publish(): Promise<Propagation> {
    const expected = new Set<string>();
    for (const w of this.#waiters) if (w.part !== undefined) expected.add(w.part);
    await this.load();
    const t0 = performance.now();
    const n = this.#n;
    const list = this.#list;
    let done = (): void => undefined;
    const confirmed = new Promise<void>((resolve) => {
      done = resolve;
    });
    const pending: PendingConfirmation = { n, expected, done };
    this.#pending.add(pending);
    for (const w of this.#waiters) w.done(list);
    this.#waiters.clear();
    this.#check(pending);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((r) => {
      timer = setTimeout(r, CONFIRM_MS);
    });
    await Promise.race([confirmed, timeout]);
    clearTimeout(timer);
    this.#pending.delete(pending);
    const count = [...expected].filter((p) => (this.#held.get(p) ?? 0) >= n).length;
    return { parts: expected.size, confirmed: count, ms: Math.round(performance.now() - t0) };
  }

  /**
   * One long poll: the current list at once when `since` is not its version, else when it changes
   * or after HOLD_MS. `part` names the asker, for confirmations only.
   */
  next(
    since: string | undefined,
    part: string | undefined,
    onClose: (cb: () => void) => void,
  ): Promise<RevocationList> | RevocationList {
    if (part !== undefined && since !== undefined) this.#confirm(part, since);
    if (since !== this.#list.version || this.#waiters.size >= MAX_WAITERS) return this.#list;
    return new Promise((resolve) => {
      const waiter: Waiter = {
        part,
        done: (list) => {
          clearTimeout(timer);
          resolve(list);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        resolve(this.#list);
      }, HOLD_MS);
      this.#waiters.add(waiter);
      onClose(() => {
        clearTimeout(timer);
        this.#waiters.delete(waiter);
      });
    });
  }

  /** Answers every held poll (the service is closing). */
  releaseAll(): void {
    for (const w of this.#waiters) w.done(this.#list);
    this.#waiters.clear();
  }

  #confirm(part: string, since: string): void {
    const [epoch, n] = since.split('.');
    if (epoch !== this.#epoch || n === undefined) return;
    if (!this.#held.has(part) && this.#held.size >= MAX_PARTS) this.#held.clear();
    this.#held.set(part, Math.max(this.#held.get(part) ?? 0, Number(n)));
    for (const p of this.#pending) this.#check(p);
  }

  #check(p: PendingConfirmation): void {
    for (const part of p.expected) if ((this.#held.get(part) ?? 0) < p.n) return;
    p.done();
  }
}

// ---- the routes

export interface RevocationRouteDeps {
  store: LabStore;
  book: RevocationBook;
  requireLabToken: (request: FastifyRequest) => void;
}

const PART_RE = /^[a-z][a-z0-9-]{0,63}$/;
const NAME_PARAM = {
  type: 'object',
  required: ['name'],
  properties: { name: { type: 'string', minLength: 1, maxLength: 64 } },
} as const;

/**
 * `GET /v1/revocations` (the feed; readable without the lab token, like `/v1/keys` and
 * `/v1/services`: in `trusted` the services do not hold the token, and the list has no secret in it)
 * and the admin changes, which answer once the change is stored and published.
 */
export function registerRevocationRoutes(app: FastifyInstance, deps: RevocationRouteDeps): void {
  const { store, book } = deps;
  app.addHook('preClose', async () => book.releaseAll());

  app.get<{ Querystring: { since?: string; part?: string } }>(
    '/v1/revocations',
    {
      schema: {
        querystring: {
          type: 'object',
          properties: {
            since: { type: 'string', maxLength: 64 },
            part: { type: 'string', maxLength: 64 },
          },
        },
      },
    },
    async (request, reply) => {
      const { since, part } = request.query;
      return book.next(since, part !== undefined && PART_RE.test(part) ? part : undefined, (cb) =>
        reply.raw.on('close', cb),
      );
    },
  );

  app.register(async (admin) => {
    admin.addHook('onRequest', async (request) => deps.requireLabToken(request));
    const change =
      <R extends object>(fn: (name: string) => Promise<R>) =>
      async (request: FastifyRequest<{ Params: { name: string } }>) => {
        const result = await fn(request.params.name);
        return { ...result, propagation: await book.publish() };
      };
    admin.post<{ Params: { name: string } }>(
      '/v1/admin/users/:name/revoke',
      { schema: { params: NAME_PARAM } },
      change((name) => revokeUserIn(store, name, 'admin')),
    );
    admin.post<{ Params: { name: string } }>(
      '/v1/admin/users/:name/reinstate',
      { schema: { params: NAME_PARAM } },
      change((name) => reinstateUserIn(store, name, 'admin')),
    );
    admin.post<{ Params: { name: string } }>(
      '/v1/admin/services/:name/quarantine',
      { schema: { params: NAME_PARAM } },
      change((name) => quarantineIn(store, name, 'admin')),
    );
    admin.post<{ Params: { name: string } }>(
      '/v1/admin/services/:name/release',
      { schema: { params: NAME_PARAM } },
      change((name) => releaseIn(store, name, 'admin')),
    );
  });
}
