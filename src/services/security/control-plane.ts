import type { TLSSocket } from 'node:tls';
import type { FastifyInstance } from 'fastify';
import type { ServerTlsOptions } from '../../pki/mtls.js';
import { authorizePeer } from '../../pki/mtls.js';
import { createHttpApp } from '../http.js';
import type { SecurityContext } from './context.js';
import { mayCallControlPlane } from './control-plane-policy.js';
import { discoveryRoutes } from './routes/discovery.js';
import { loginRoutes } from './routes/login.js';
import { revocationFeedRoutes } from './routes/revocations.js';

/**
 * The security service's control-plane listener (links:mtls): TLS 1.3 with its own lab-CA identity
 * (`spiffe://trusted-ms/<lab>/security/security`), a client certificate required, and each route
 * open to the kinds of part control-plane-policy.ts names. The parts reach the feeds (keys,
 * attestation table, revocations) and the gateway its login relay here, never with the lab token;
 * a request whose route is not in the policy (an admin route, say) is not served.
 */
export function buildControlPlane(ctx: SecurityContext, tls: ServerTlsOptions): FastifyInstance {
  const app = createHttpApp({ https: tls });
  app.addHook('onRequest', async (request) => {
    const route = `${request.method} ${request.routeOptions.url ?? ''}`;
    authorizePeer(request.raw.socket as TLSSocket, (_name, kind) =>
      request.is404 ? true : mayCallControlPlane(route, kind),
    );
  });
  app.register(discoveryRoutes, ctx);
  app.register(revocationFeedRoutes, ctx);
  app.register(loginRoutes, ctx);
  return app;
}
