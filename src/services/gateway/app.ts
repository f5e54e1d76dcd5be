import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AttestationGate } from '../../defences/attestation.js';
import { type AttestationTable, parseAttestationEntries } from '../../defences/attestation-table.js';
import type { GatewayLimits } from '../../defences/limits.js';
import type { Defences } from '../../defences/presets.js';
import { RATE_WAIT_HEADER } from '../../defences/rate-limit.js';
import type { BasicAtGateway } from '../../defences/request/gateway-basic.js';
import { bearer, type GatewayAuthenticator } from '../../defences/request/types.js';
import { TrustedMsError } from '../../errors.js';
import { CLIENT_ADDRESS_HEADER } from '../../kernel/client-address.js';
import type { RevocationView } from '../../protocol/revocation-list.js';
import { CHALLENGE_REQUEST_BODY, VERIFY_REQUEST_BODY } from '../../protocol/wire-schemas.js';
import { createHttpApp, toHttpError } from '../http.js';
import { describeApi } from '../openapi.js';
import type { Upstream } from './upstream.js';

export type { Upstream, UpstreamRequest, UpstreamResponse } from './upstream.js';

/**
 * How users log in through the gateway: `basic`, a check of HTTP basic credentials (`GET
 * /auth/basic`, so a typo shows at login rather than at the first call); `relay`, the login steps
 * (`POST /auth/challenge`, `/auth/verify`) relayed to the security service, which in Docker is
 * not reachable otherwise, and here seen with the real client address (the login-flood defence).
 */
export type GatewayLogin = { kind: 'basic'; basic: BasicAtGateway } | { kind: 'relay'; auth: Upstream };

/** A gateway is handed its defences as strategies (src/defences/), each required: no posture checks. */
export interface GatewayDeps {
  /** the defences in force, for /healthz and the log; the strategies below carry them out */
  defences: Defences;
  /** service name → how to reach it */
  upstreams: Record<string, Upstream>;
  /** request: who a request comes from (basic, bearer ticket, ticket + proof) */
  authenticate: GatewayAuthenticator;
  /** attestation: whether a service may be sent requests */
  attestationGate: AttestationGate;
  /** limits: per address, per user, logins */
  limits: GatewayLimits;
  login: GatewayLogin;
  /** the attestation table the gate reads, updated by pushes from the security service */
  attestation: AttestationTable;
  /** revoked users and quarantined services, kept current by the security service's feed */
  revocations?: RevocationView;
  now?: () => number;
  /** the lab token the security service pushes attestations with; without it, pushes are refused */
  labToken?: string;
  /** one line per refusal; stderr by default */
  log?: (line: string) => void;
}

const EMPTY = Buffer.alloc(0);
const BASIC_REALM = 'Basic realm="trusted-ms"';

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
  const { attestation, limits } = deps;
  const now = deps.now ?? Date.now;
  const log = deps.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const upstreams = new Map(Object.entries(deps.upstreams));
  const labTokenDigest = deps.labToken ? sha256(deps.labToken) : undefined;
  const contexts = new WeakMap<FastifyRequest, RequestContext>();

  const app = createHttpApp();
  describeApi(app, {
    title: 'trusted-ms gateway',
    description:
      "The lab's only entry point: the login (relayed to the security service), and /svc/<service>/... with a ticket and, in the trusted posture, a proof (docs/protocol.md).",
  });
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

  app.get('/healthz', async () => ({ ok: true, part: 'gateway', defences: deps.defences }));

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

  // Each check in its defence's strategy, in this order: the address's rate, the credentials (the
  // ticket, not revoked, its proof), the user's rate, the service's attestation, its quarantine.
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
    limits.admitClient(request.ip);
    const who = await deps.authenticate.authenticate(
      { method: request.method, url, headers: request.headers, body, ip: request.ip },
      (user) => {
        ctx.user = user;
      },
    );
    // Held back to the user's rate: said on the answer, so a client (and the DoS judge) sees the
    // limit engaged even though the request was served.
    const waitedMs = await limits.admitUser(who.user);
    if (waitedMs > 0) reply.header(RATE_WAIT_HEADER, String(Math.ceil(waitedMs)));
    await deps.attestationGate.admit(name);
    if (deps.revocations?.quarantined(name) === true) {
      throw new TrustedMsError('SERVICE_QUARANTINED', `service ${name} is quarantined`);
    }
    const headers: Record<string, string> = { ...who.forward };
    const contentType = request.headers['content-type'];
    if (contentType !== undefined) headers['content-type'] = contentType;

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

  // The canonical paths are the security service's own (docs/protocol.md, "The login flow");
  // `/auth/...` stays as an alias for the clients written before, same handler, same limits.
  function loginRoutes(handler: (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>): void {
    for (const [prefix, deprecated] of [
      ['/v1', false],
      ['', true],
    ] as const) {
      app.post(`${prefix}/auth/challenge`, loginRoute(CHALLENGE_REQUEST_BODY, deprecated), handler);
      app.post(`${prefix}/auth/verify`, loginRoute(VERIFY_REQUEST_BODY, deprecated), handler);
    }
  }

  const login = deps.login;
  if (login.kind === 'basic') {
    app.get('/auth/basic', async (request) => {
      const p = await login.basic.principal(request.headers.authorization);
      return { user: p.user, role: p.role };
    });
    const noChallenge = async () => {
      throw new TrustedMsError('ROUTE_NOT_FOUND', "this lab's login is HTTP basic: there is no challenge");
    };
    loginRoutes(noChallenge);
  } else {
    loginRoutes(async (request: FastifyRequest, reply: FastifyReply) => {
      const release = await limits.loginSlot(request.ip);
      try {
        return await relayAuthStep(request, reply, login.auth);
      } finally {
        release();
      }
    });
  }

  const relayAuthStep = async (request: FastifyRequest, reply: FastifyReply, auth: Upstream) => {
    await limits.admitLogin(request.ip);
    const body = (request.body as Buffer | undefined) ?? EMPTY;
    const step = /^(\/v1)?\/auth\/verify/.test(request.url) ? 'verify' : 'challenge';
    const contentType = request.headers['content-type'];
    const headers: Record<string, string> = {
      'content-type': typeof contentType === 'string' ? contentType : 'application/json',
    };
    // The security service limits logins per client address, and sees only ours: tell it the real
    // one, vouched for by the lab token (why that and not the socket: ../../kernel/client-address.ts).
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
    if (res.status >= 400 && res.status < 500) limits.loginFailed(request.ip);
    const resType = res.headers['content-type'];
    reply.code(res.status);
    if (resType !== undefined) reply.header('content-type', Array.isArray(resType) ? resType[0] : resType);
    return reply.send(res.body);
  };

  app.all('/svc/:service', forward);
  app.all('/svc/:service/*', forward);
  return app;
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/**
 * A relayed login step's route options: the body schema is there to describe the API (OpenAPI);
 * the security service validates the body, so the gateway's own validator accepts whatever it
 * relays (it sees the raw bytes, not parsed JSON).
 */
function loginRoute(body: object, deprecated: boolean) {
  return {
    schema: { body, ...(deprecated ? { deprecated: true } : {}) },
    validatorCompiler: () => () => true,
  };
}

/** `/svc/<name>/rest?query` → `/rest?query` (raw, as sent), `/svc/<name>` → `/`. */
export function servicePath(url: string): string {
  const rest = url.slice('/svc/'.length);
  const i = rest.search(/[/?]/);
  if (i < 0) return '/';
  const tail = rest.slice(i);
  return tail.startsWith('?') ? `/${tail}` : tail;
}
