import { createHash, timingSafeEqual } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isTrustedMsError, TrustedMsError } from '../../errors.js';
import type { Posture } from '../../lab/posture.js';
import { PROOF_HEADER, type ProofVerifier } from '../../protocol/proof.js';
import type { RevocationView } from '../../protocol/revocation-list.js';
import { openSessionKey } from '../../protocol/session-key.js';
import type { TicketClaims, TicketVerifier } from '../../protocol/ticket.js';
import { CLIENT_ADDRESS_HEADER } from '../client-address.js';
import { createHttpApp, toHttpError } from '../http.js';
import { type KeyedConcurrency, RATE_WAIT_HEADER, type RateLimiter } from '../rate-limit.js';
import { type AttestationTable, parseAttestationEntries } from './attestation-table.js';
import type { Upstream } from './upstream.js';

export type { Upstream, UpstreamRequest, UpstreamResponse } from './upstream.js';

/** Who a posture-`none` password check says the caller is. */
export interface Principal {
  user: string;
  role: string;
  perms: Record<string, string[]>;
}

export interface GatewayDeps {
  posture: Posture;
  /** service name → how to reach it */
  upstreams: Record<string, Upstream>;
  /** paper, trusted: checks tickets (and caches them) */
  verifier?: TicketVerifier;
  /** trusted: the lab secret that opens `cnf.sk` */
  sealKey?: Buffer;
  /** trusted: checks the `tms-proof` header and refuses replays */
  proofs?: ProofVerifier;
  /**
   * TEST ONLY, a deliberately broken defence: trusted accepts a ticket without checking its proof of
   * possession (a stolen ticket then works). Exists so the attack catalog's tests can show that a
   * regression is caught; `lab up` takes it only from code (`LabUpOptions`), never from the CLI.
   */
  insecureSkipProof?: boolean;
  /**
   * TEST ONLY, a deliberately broken defence: paper and trusted route to a service whatever its
   * attestation says (a tampered service then gets traffic). Same rules as `insecureSkipProof`.
   */
  insecureSkipAttestation?: boolean;
  /** none: the password check behind HTTP basic (the security service) */
  checkPassword?: (user: string, password: string) => Promise<Principal>;
  attestation: AttestationTable;
  /** revoked users and quarantined services, kept current by the security service's feed */
  revocations?: RevocationView;
  /**
   * Asks the security service again before refusing a service as not trusted: the table is pushed
   * and polled, so a service attested a moment ago (a lab just up, a service just restarted) would
   * otherwise get 503 until the next poll. The caller bounds how often it really asks.
   */
  recheckAttestation?: () => Promise<void>;
  /**
   * trusted: per user (after the proof) and per client address (before the ticket). A user over
   * its rate waits up to `perUserMaxWaitMs` (default 0: refused at once) for its turn, so a user
   * flooding with many requests in flight is slowed to the rate instead of spinning on cheap 429s
   * that still cost the gateway (measured: dos.request-flood).
   */
  rateLimit?: { perUser: RateLimiter; perClient: RateLimiter; perUserMaxWaitMs?: number };
  now?: () => number;
  /** the lab token the security service pushes attestations with; without it, pushes are refused */
  labToken?: string;
  /** one line per refusal; stderr by default */
  log?: (line: string) => void;
  /** paper, trusted: the security service, to which `POST /auth/challenge` and `/auth/verify` are relayed */
  auth?: Upstream;
  /** trusted: logins allowed per client address (each costs the security service a password hash) */
  authRateLimit?: RateLimiter;
  /**
   * trusted: failed login steps allowed per client address. Counted after the answer, checked before
   * the relay: a flood of wrong passwords gets a handful of hashes and then cheap 429s here (no hash,
   * no audit write at the security service), while successful logins, e.g. many users behind one
   * address, are never counted. The rate limit above alone let one client take all the hashing the
   * lab can do (measured: fewer logins per second than the limit allows, see dos.login-flood).
   */
  authFailureLimit?: RateLimiter;
  /** trusted: login steps in flight per client address (the rest wait, in a bounded queue) */
  authInFlight?: KeyedConcurrency;
  /**
   * trusted: how long a client whose failed logins are spent waits for its 429 (default 1 s), in its
   * login slot. Refused at once, a flooding client asks again at once and keeps the gateway busy
   * answering (measured: ~550 refusals/s from 32 connections slowed others' logins ~5x); made to
   * wait, it gets two refusals a second.
   */
  authRefusalDelayMs?: number;
  /** none: how long a good basic credential is remembered (60 s) and how many (10,000) */
  basicCacheMs?: number;
  basicCacheEntries?: number;
}

const EMPTY = Buffer.alloc(0);
const BASIC_REALM = 'Basic realm="trusted-ms"';
/** none: password re-checks of cached credentials running in the background at once */
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

/** What a refusal's log line says about its request. */
interface RequestContext {
  service?: string;
  user?: string;
}

/**
 * The API gateway, the lab's only entry point: `/svc/<name>/...` is checked according to the posture
 * (password, bearer ticket, or ticket + proof of possession), rate-limited, refused when the service
 * is not attested, and forwarded to the service with only what it needs. Bodies are kept as raw bytes,
 * so the proof covers exactly what is forwarded.
 */
export function buildGateway(deps: GatewayDeps): FastifyInstance {
  const { posture, attestation } = deps;
  const now = deps.now ?? Date.now;
  const log = deps.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const upstreams = new Map(Object.entries(deps.upstreams));
  const need = <T>(x: T | undefined, what: string): T => {
    if (x === undefined)
      throw new TrustedMsError('INVALID_INPUT', `gateway in posture ${posture} needs ${what}`);
    return x;
  };
  const checkPassword = posture === 'none' ? need(deps.checkPassword, 'checkPassword') : undefined;
  const verifier = posture === 'none' ? undefined : need(deps.verifier, 'a ticket verifier');
  const sealKey = posture === 'trusted' ? need(deps.sealKey, 'the seal key') : undefined;
  const proofs = posture === 'trusted' ? need(deps.proofs, 'a proof verifier') : undefined;
  const rateLimit = posture === 'trusted' ? deps.rateLimit : undefined;
  const labTokenDigest = deps.labToken ? sha256(deps.labToken) : undefined;

  const basicCacheMs = deps.basicCacheMs ?? 60_000;
  const basicCacheEntries = deps.basicCacheEntries ?? 10_000;
  const basicCache = new Map<string, CachedPrincipal>();
  const basicInFlight = new Map<string, Promise<CachedPrincipal>>();
  let backgroundChecks = 0;
  // Opened session keys, next to the verifier's cached claims: they live exactly as long as it does.
  const sessionKeys = new WeakMap<TicketClaims, Buffer>();
  const contexts = new WeakMap<FastifyRequest, RequestContext>();

  const app = createHttpApp();
  app.removeAllContentTypeParsers();
  const raw = (_req: FastifyRequest, body: Buffer, done: (err: Error | null, body?: Buffer) => void) =>
    done(null, body);
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, raw);
  app.addContentTypeParser('*', { parseAs: 'buffer' }, raw);

  app.addHook('onError', async (request, reply, error) => {
    const err = toHttpError(error);
    if (err.code === 'AUTH_FAILED') reply.header('www-authenticate', BASIC_REALM);
    const ctx = contexts.get(request) ?? {};
    const reason = (error as { reason?: unknown }).reason;
    log(
      JSON.stringify({
        at: new Date(now()).toISOString(),
        part: 'gateway',
        refused: err.code,
        ...(ctx.service === undefined ? {} : { service: ctx.service }),
        ...(ctx.user === undefined ? {} : { user: ctx.user }),
        ...(typeof reason === 'string' ? { reason } : {}),
        client: request.ip,
      }),
    );
  });

  app.get('/healthz', async () => ({ ok: true, part: 'gateway', posture }));

  app.post('/internal/attestations', async (request) => {
    const given = bearer(request.headers.authorization);
    if (
      labTokenDigest === undefined ||
      given === undefined ||
      !timingSafeEqual(sha256(given), labTokenDigest)
    ) {
      throw new TrustedMsError('ADMIN_TOKEN_INVALID', 'lab token invalid');
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse((request.body as Buffer | undefined)?.toString('utf8') ?? '');
    } catch {
      throw new TrustedMsError('INVALID_INPUT', 'body is not JSON');
    }
    const services = parseAttestationEntries((parsed as { services?: unknown } | null)?.services);
    attestation.replace(services);
    return { ok: true, services: services.length };
  });

  /** none: a good cached password check no longer counts once its user is revoked. */
  const principalFor = async (header: string | undefined, ctx?: RequestContext): Promise<CachedPrincipal> => {
    if (header === undefined) throw new TrustedMsError('AUTH_FAILED', 'authentication required');
    const key = createHash('sha256').update(header).digest('base64');
    const p = await cachedPrincipalFor(key, header);
    if (ctx !== undefined) ctx.user = p.user;
    if (deps.revocations?.userRevoked(p.user) === true) {
      basicCache.delete(key);
      throw new TrustedMsError('USER_REVOKED', `${p.user} is revoked`);
    }
    return p;
  };

  const cachedPrincipalFor = async (key: string, header: string): Promise<CachedPrincipal> => {
    const hit = basicCache.get(key);
    const t = now();
    if (hit !== undefined) {
      if (t < hit.until) {
        // Performance: re-check in the background during the entry's last third, so a busy client
        // never waits for a password hash, and at most MAX_BACKGROUND_CHECKS at a time, so entries
        // made together (150 clients logging in) do not send 150 hashes to the security service at
        // once (they timed out under load, and then every client waited). Staleness stays at most
        // basicCacheMs.
        if (
          t >= hit.until - basicCacheMs / 3 &&
          !basicInFlight.has(key) &&
          backgroundChecks < MAX_BACKGROUND_CHECKS
        ) {
          backgroundChecks += 1;
          check(key, header)
            .catch(() => undefined)
            .finally(() => {
              backgroundChecks -= 1;
            });
        }
        return hit;
      }
      basicCache.delete(key);
    }
    return basicInFlight.get(key) ?? check(key, header);
  };

  /** One password check for a basic header (deduplicated per header): cached when good, evicted when refused. */
  const check = (key: string, header: string): Promise<CachedPrincipal> => {
    let pending = basicInFlight.get(key);
    if (pending === undefined) {
      const creds = parseBasic(header);
      if (creds === undefined)
        return Promise.reject(new TrustedMsError('AUTH_FAILED', 'authentication failed'));
      pending = (async () => {
        let p: Principal;
        try {
          p = await (checkPassword as NonNullable<GatewayDeps['checkPassword']>)(creds.user, creds.password);
        } catch (err) {
          if (isTrustedMsError(err) && PASSWORD_PASS_THROUGH.has(err.code)) throw err;
          basicCache.delete(key);
          throw new TrustedMsError('AUTH_FAILED', 'authentication failed');
        }
        const entry = {
          user: p.user,
          role: p.role,
          perms: JSON.stringify(p.perms),
          until: now() + basicCacheMs,
        };
        basicCache.delete(key);
        while (basicCache.size >= basicCacheEntries)
          basicCache.delete(basicCache.keys().next().value as string);
        basicCache.set(key, entry);
        return entry;
      })().finally(() => basicInFlight.delete(key));
      basicInFlight.set(key, pending);
    }
    return pending;
  };

  const sessionKeyOf = (claims: TicketClaims): Buffer => {
    let key = sessionKeys.get(claims);
    if (key === undefined) {
      if (claims.cnf === undefined) throw new TrustedMsError('TICKET_INVALID', 'ticket verification failed');
      key = openSessionKey(sealKey as Buffer, claims.cnf.sk, claims.jti);
      sessionKeys.set(claims, key);
    }
    return key;
  };

  const forward = async (
    request: FastifyRequest<{ Params: { service?: string } }>,
    reply: FastifyReply,
  ): Promise<FastifyReply> => {
    const name = request.params.service ?? '';
    const ctx: RequestContext = { service: name.slice(0, 64) };
    contexts.set(request, ctx);
    const upstream = upstreams.get(name);
    if (upstream === undefined) {
      throw new TrustedMsError('SERVICE_NOT_FOUND', `no service named ${name.slice(0, 64)} in this lab`);
    }
    const url = request.url;
    const body = Buffer.isBuffer(request.body) ? request.body : EMPTY;
    const headers: Record<string, string> = {};
    const contentType = request.headers['content-type'];
    if (contentType !== undefined) headers['content-type'] = contentType;

    if (posture === 'none') {
      const p = await principalFor(request.headers.authorization, ctx);
      headers['x-tms-user'] = p.user;
      headers['x-tms-role'] = p.role;
      headers['x-tms-perms'] = p.perms;
    } else {
      if (rateLimit !== undefined && !rateLimit.perClient.take(request.ip)) throw rateLimited();
      const authorization = request.headers.authorization;
      const claims = (verifier as TicketVerifier).verify(bearer(authorization) ?? '');
      ctx.user = claims.sub;
      if (deps.revocations?.ticketRevoked(claims) === true) {
        throw new TrustedMsError('TICKET_REVOKED', 'ticket revoked');
      }
      if (posture === 'trusted' && deps.insecureSkipProof !== true) {
        const proof = request.headers[PROOF_HEADER];
        (proofs as ProofVerifier).verify({
          header: Array.isArray(proof) ? proof.join(', ') : proof,
          sessionKey: sessionKeyOf(claims),
          method: request.method,
          path: url,
          body,
          jti: claims.jti,
        });
      }
      if (rateLimit !== undefined) {
        const waitMs = rateLimit.perUser.reserve(claims.sub, rateLimit.perUserMaxWaitMs ?? 0);
        if (waitMs === undefined) throw rateLimited();
        if (waitMs > 0) {
          reply.header(RATE_WAIT_HEADER, String(Math.ceil(waitMs)));
          await sleep(waitMs);
        }
      }
      if (attestation.state(name) !== 'trusted' && deps.insecureSkipAttestation !== true) {
        await deps.recheckAttestation?.();
        if (attestation.state(name) !== 'trusted') {
          throw new TrustedMsError('SERVICE_UNTRUSTED', `service ${name} is not attested`);
        }
      }
      headers.authorization = authorization as string;
    }
    if (deps.revocations?.quarantined(name) === true) {
      throw new TrustedMsError('SERVICE_QUARANTINED', `service ${name} is quarantined`);
    }

    const res = await upstream.request({
      method: request.method,
      path: servicePath(url),
      headers,
      ...(body.length > 0 ? { body } : {}),
    });
    const resType = res.headers['content-type'];
    reply.code(res.status);
    if (resType !== undefined) reply.header('content-type', Array.isArray(resType) ? resType[0] : resType);
    return reply.send(res.body);
  };

  // The login endpoints, relayed to the security service: in Docker it is not reachable otherwise,
  // and here the per-client limit sees the real client address (the login-flood defence).
  const relayAuth = async (request: FastifyRequest, reply: FastifyReply) => {
    if (deps.auth === undefined)
      throw new TrustedMsError('ROUTE_NOT_FOUND', `posture ${posture} has no login`);
    const gate = posture === 'trusted' ? deps.authInFlight : undefined;
    const release = gate === undefined ? () => undefined : await gate.acquire(request.ip);
    if (release === undefined) throw rateLimited();
    try {
      return await relayAuthStep(request, reply, deps.auth);
    } finally {
      release();
    }
  };
  const relayAuthStep = async (request: FastifyRequest, reply: FastifyReply, auth: Upstream) => {
    const failures = posture === 'trusted' ? deps.authFailureLimit : undefined;
    if (failures !== undefined && !failures.peek(request.ip)) {
      await sleep(deps.authRefusalDelayMs ?? 1000);
      throw rateLimited();
    }
    if (posture === 'trusted' && deps.authRateLimit !== undefined && !deps.authRateLimit.take(request.ip)) {
      throw rateLimited();
    }
    const body = (request.body as Buffer | undefined) ?? EMPTY;
    const step = request.url.startsWith('/auth/verify') ? 'verify' : 'challenge';
    const contentType = request.headers['content-type'];
    const headers: Record<string, string> = {
      'content-type': typeof contentType === 'string' ? contentType : 'application/json',
    };
    // The security service limits logins per client address, and sees only ours: tell it the real
    // one, vouched for by the lab token (why that and not the socket: ../client-address.ts).
    if (deps.labToken !== undefined) {
      headers.authorization = `Bearer ${deps.labToken}`;
      headers[CLIENT_ADDRESS_HEADER] = request.ip;
    }
    const res = await auth.request({
      method: 'POST',
      path: `/v1/auth/${step}`,
      headers,
      ...(body.length > 0 ? { body } : {}),
    });
    if (failures !== undefined && res.status >= 400 && res.status < 500) failures.take(request.ip);
    const resType = res.headers['content-type'];
    reply.code(res.status);
    if (resType !== undefined) reply.header('content-type', Array.isArray(resType) ? resType[0] : resType);
    return reply.send(res.body);
  };
  // Posture none has no login: `user login` checks the basic credentials here so a typo shows at once.
  if (posture === 'none') {
    app.get('/auth/basic', async (request) => {
      const p = await principalFor(request.headers.authorization);
      return { user: p.user, role: p.role };
    });
  }
  app.post('/auth/challenge', relayAuth);
  app.post('/auth/verify', relayAuth);

  app.all('/svc/:service', forward);
  app.all('/svc/:service/*', forward);
  return app;
}

function rateLimited(): TrustedMsError {
  return new TrustedMsError('RATE_LIMITED', 'too many requests, try again shortly');
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** The token of an `authorization: Bearer <token>` header. */
function bearer(header: string | undefined): string | undefined {
  if (header === undefined || header.length < 8 || header.slice(0, 7).toLowerCase() !== 'bearer ')
    return undefined;
  const token = header.slice(7);
  return token === '' ? undefined : token;
}

const BASIC_RE = /^basic +([A-Za-z0-9+/]+={0,2}) *$/i;

/** User and password of an HTTP basic header, or undefined when it is not one. */
function parseBasic(header: string): { user: string; password: string } | undefined {
  if (header.length > 4096) return undefined;
  const m = BASIC_RE.exec(header);
  if (m === null) return undefined;
  const decoded = Buffer.from(m[1] as string, 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  if (i <= 0 || i === decoded.length - 1) return undefined;
  return { user: decoded.slice(0, i), password: decoded.slice(i + 1) };
}

/** `/svc/<name>/rest?query` → `/rest?query` (raw, as sent), `/svc/<name>` → `/`. */
export function servicePath(url: string): string {
  const rest = url.slice('/svc/'.length);
  const i = rest.search(/[/?]/);
  if (i < 0) return '/';
  const tail = rest.slice(i);
  return tail.startsWith('?') ? `/${tail}` : tail;
}
