import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { AttestationGate } from '../../../defences/attestation.js';
import type { FeedGuard } from '../../../defences/feeds.js';
import type { GatewayLimits } from '../../../defences/limits.js';
import { RATE_WAIT_HEADER } from '../../../defences/rate-limit.js';
import type { GatewayAuthenticator } from '../../../defences/request/types.js';
import { TrustedMsError } from '../../../errors.js';
import type { RevocationView } from '../../../protocol/revocation-list.js';
import type { RefusalContext } from '../refusal-log.js';
import type { Upstream } from '../upstream.js';

/** The strategies the forwarding runs, each from its defence (src/defences/), and where to. */
export interface ForwardDeps {
  /** service name → how to reach it */
  upstreams: Record<string, Upstream>;
  authenticate: GatewayAuthenticator;
  attestationGate: AttestationGate;
  limits: GatewayLimits;
  revocations?: RevocationView;
  /** feeds:signed: the list and table it acts on are within the lab's staleness bound */
  feeds?: FeedGuard;
}

const EMPTY = Buffer.alloc(0);

/**
 * `/svc/<name>/...`: checked, then forwarded to the service with only what it needs. Bodies are
 * raw bytes (the gateway's content parsers), so a proof covers exactly what is forwarded.
 */
export const forwardRoutes: FastifyPluginAsync<ForwardDeps> = async (app, deps) => {
  const { limits } = deps;
  const upstreams = new Map(Object.entries(deps.upstreams));

  // Each check in its defence's strategy, in this order: the address's rate, the credentials (the
  // ticket, not revoked, its proof), the user's rate, the service's attestation, its quarantine.
  const forward = async (
    request: FastifyRequest<{ Params: { service?: string } }>,
    reply: FastifyReply,
  ): Promise<FastifyReply> => {
    const name = request.params.service ?? '';
    const ctx: RefusalContext = { service: name.slice(0, 64) };
    request.refusalContext = ctx;
    const upstream = upstreams.get(name);
    if (upstream === undefined) {
      throw new TrustedMsError('SERVICE_NOT_FOUND', `no service named ${name.slice(0, 64)} in this lab`);
    }
    const url = request.url;
    const body = Buffer.isBuffer(request.body) ? request.body : EMPTY;
    limits.admitClient(request.ip);
    // Before the ticket: its revocation check and the attestation gate act on the feeds.
    deps.feeds?.assertFresh();
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

  app.all('/svc/:service', forward);
  app.all('/svc/:service/*', forward);
};

/** `/svc/<name>/rest?query` → `/rest?query` (raw, as sent), `/svc/<name>` → `/`. */
export function servicePath(url: string): string {
  const rest = url.slice('/svc/'.length);
  const i = rest.search(/[/?]/);
  if (i < 0) return '/';
  const tail = rest.slice(i);
  return tail.startsWith('?') ? `/${tail}` : tail;
}
