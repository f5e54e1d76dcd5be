import type { FastifyInstance } from 'fastify';
import { toHttpError } from '../http.js';

/** What a refusal's log line says about its request, as far as the gateway got with it. */
export interface RefusalContext {
  service?: string;
  user?: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** the gateway's: set by the forwarding (routes/forward.ts), read when a request is refused */
    refusalContext: RefusalContext | null;
  }
}

const BASIC_REALM = 'Basic realm="trusted-ms"';

/**
 * One JSON line per refused request, on every route of the gateway; and the basic challenge header
 * on a refused credential. Called on the root app, not register()ed: an encapsulated plugin's hook
 * would not see its siblings' routes.
 */
export function logRefusals(app: FastifyInstance, log: (line: string) => void, now: () => number): void {
  app.decorateRequest('refusalContext', null);
  app.addHook('onError', async (request, reply, error) => {
    const err = toHttpError(error);
    if (err.code === 'AUTH_FAILED') reply.header('www-authenticate', BASIC_REALM);
    const ctx = request.refusalContext ?? {};
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
}
