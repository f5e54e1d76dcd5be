import { createHash } from 'node:crypto';
import { isTrustedMsError, TrustedMsError } from '../../errors.js';
import type { RevocationView } from '../../protocol/revocation-list.js';
import { monotonicNow } from '../rate-limit.js';
import type { Authenticated, GatewayAuthenticator, GatewayRequest } from './types.js';

/** Who a password check says the caller is. */
export interface PasswordPrincipal {
  user: string;
  role: string;
  perms: Record<string, string[]>;
}

export interface BasicAtGatewayOptions {
  /** the password check behind HTTP basic (the security service) */
  checkPassword: (user: string, password: string) => Promise<PasswordPrincipal>;
  /** a good cached password check no longer counts once its user is revoked */
  revocations?: RevocationView;
  /** how long a good basic credential is remembered (60 s) and how many (10,000) */
  cacheMs?: number;
  cacheEntries?: number;
  /** the clock of that duration, in milliseconds: monotonic by default */
  now?: () => number;
}

/** password re-checks of cached credentials running in the background at once */
const MAX_BACKGROUND_CHECKS = 4;
/** checkPassword refusals passed on as they are; any other failure is AUTH_FAILED. */
const PASSWORD_PASS_THROUGH = new Set([
  'ACCOUNT_LOCKED',
  'RATE_LIMITED',
  'SERVICE_UNAVAILABLE',
  'USER_REVOKED',
]);

interface CachedPrincipal {
  user: string;
  role: string;
  perms: string;
  until: number;
}

/**
 * `request:basic` at the gateway: HTTP basic credentials checked by the security service's password
 * check and remembered for a while, and the user vouched for to the service in `x-tms-*` headers
 * (the service trusts the gateway: the `none` posture's whole security).
 */
export class BasicAtGateway implements GatewayAuthenticator {
  readonly #o: BasicAtGatewayOptions;
  readonly #now: () => number;
  readonly #cacheMs: number;
  readonly #cacheEntries: number;
  readonly #cache = new Map<string, CachedPrincipal>();
  readonly #inFlight = new Map<string, Promise<CachedPrincipal>>();
  #backgroundChecks = 0;

  constructor(o: BasicAtGatewayOptions) {
    this.#o = o;
    // A duration (how long a password check is remembered): a wall clock stepped back would stretch it.
    this.#now = o.now ?? monotonicNow;
    this.#cacheMs = o.cacheMs ?? 60_000;
    this.#cacheEntries = o.cacheEntries ?? 10_000;
  }

  async authenticate(request: GatewayRequest, onUser?: (user: string) => void): Promise<Authenticated> {
    const p = await this.principal(request.headers.authorization, onUser);
    return { user: p.user, forward: { 'x-tms-user': p.user, 'x-tms-role': p.role, 'x-tms-perms': p.perms } };
  }

  /** The user behind a basic header (also `GET /auth/basic`, the login check of `request:basic`). */
  async principal(
    header: string | undefined,
    onUser?: (user: string) => void,
  ): Promise<{ user: string; role: string; perms: string }> {
    if (header === undefined) throw new TrustedMsError('AUTH_FAILED', 'authentication required');
    const key = createHash('sha256').update(header).digest('base64');
    const p = await this.#cached(key, header);
    onUser?.(p.user);
    if (this.#o.revocations?.userRevoked(p.user) === true) {
      this.#cache.delete(key);
      throw new TrustedMsError('USER_REVOKED', `${p.user} is revoked`);
    }
    return p;
  }

  async #cached(key: string, header: string): Promise<CachedPrincipal> {
    const hit = this.#cache.get(key);
    const t = this.#now();
    if (hit !== undefined) {
      if (t < hit.until) {
        // Performance: re-check in the background during the entry's last third, so a busy client
        // never waits for a password hash, and at most MAX_BACKGROUND_CHECKS at a time, so entries
        // made together (150 clients logging in) do not send 150 hashes to the security service at
        // once (they timed out under load, and then every client waited). Staleness stays at most
        // cacheMs.
        if (
          t >= hit.until - this.#cacheMs / 3 &&
          !this.#inFlight.has(key) &&
          this.#backgroundChecks < MAX_BACKGROUND_CHECKS
        ) {
          this.#backgroundChecks += 1;
          this.#check(key, header)
            .catch(() => undefined)
            .finally(() => {
              this.#backgroundChecks -= 1;
            });
        }
        return hit;
      }
      this.#cache.delete(key);
    }
    return this.#inFlight.get(key) ?? this.#check(key, header);
  }

  /** One password check for a basic header (deduplicated per header): cached when good, evicted when refused. */
  #check(key: string, header: string): Promise<CachedPrincipal> {
    let pending = this.#inFlight.get(key);
    if (pending === undefined) {
      const creds = parseBasic(header);
      if (creds === undefined)
        return Promise.reject(new TrustedMsError('AUTH_FAILED', 'authentication failed'));
      pending = (async () => {
        let p: PasswordPrincipal;
        try {
          p = await this.#o.checkPassword(creds.user, creds.password);
        } catch (err) {
          if (isTrustedMsError(err) && PASSWORD_PASS_THROUGH.has(err.code)) throw err;
          this.#cache.delete(key);
          throw new TrustedMsError('AUTH_FAILED', 'authentication failed');
        }
        const entry = {
          user: p.user,
          role: p.role,
          perms: JSON.stringify(p.perms),
          until: this.#now() + this.#cacheMs,
        };
        this.#cache.delete(key);
        while (this.#cache.size >= this.#cacheEntries)
          this.#cache.delete(this.#cache.keys().next().value as string);
        this.#cache.set(key, entry);
        return entry;
      })().finally(() => this.#inFlight.delete(key));
      this.#inFlight.set(key, pending);
    }
    return pending;
  }
}

const BASIC_RE = /^basic +([A-Za-z0-9+/]+={0,2}) *$/i;

/** User and password of an HTTP basic header, or undefined when it is not one. */
export function parseBasic(header: string): { user: string; password: string } | undefined {
  if (header.length > 4096) return undefined;
  const m = BASIC_RE.exec(header);
  if (m === null) return undefined;
  const decoded = Buffer.from(m[1] as string, 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  if (i <= 0 || i === decoded.length - 1) return undefined;
  return { user: decoded.slice(0, i), password: decoded.slice(i + 1) };
}
