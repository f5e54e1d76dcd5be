import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { CHALLENGE_REQUEST_BODY, VERIFY_REQUEST_BODY } from '../../../protocol/wire-schemas.js';

/**
 * The login's two steps, both served by one handler. The canonical paths are the security
 * service's own (docs/protocol.md, "The login flow"); `/auth/...` stays as an alias for the clients
 * written before, same handler, same limits.
 */
export function loginStepRoutes(
  app: FastifyInstance,
  handler: (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>,
): void {
  for (const [prefix, deprecated] of [
    ['/v1', false],
    ['', true],
  ] as const) {
    app.post(`${prefix}/auth/challenge`, loginRoute(CHALLENGE_REQUEST_BODY, deprecated), handler);
    app.post(`${prefix}/auth/verify`, loginRoute(VERIFY_REQUEST_BODY, deprecated), handler);
  }
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
