import type { TLSSocket } from 'node:tls';
import type { FastifyInstance } from 'fastify';
import { TrustedMsError } from '../../errors.js';
import type { ServerTlsOptions } from '../../pki/mtls.js';
import { authorizePeer, certificateEndClock } from '../../pki/mtls.js';
import { createHttpApp } from '../http.js';
import type { SecurityContext } from './context.js';
import { isAdminRoute, mayCallControlPlane } from './control-plane-policy.js';
import { adminRoutes } from './routes/admin.js';
import { discoveryRoutes } from './routes/discovery.js';
import { loginRoutes } from './routes/login.js';
import { revocationFeedRoutes } from './routes/revocations.js';

/**
 * The security service's control-plane listener (links:mtls): TLS 1.3 with its own lab-CA identity
 * (`spiffe://trusted-ms/<lab>/security/security`), a client certificate required, and each route
 * open to the kinds of part control-plane-policy.ts names. The parts reach the feeds (keys,
 * attestation table, revocations) and the gateway its login relay here, never with the lab token;
 * the CLI and the watchman reach the admin API here with an `admin` identity and the lab token.
 * A request whose route is not in the policy is refused.
 */
export function buildControlPlane(ctx: SecurityContext, tls: ServerTlsOptions): FastifyInstance {
  const app = createHttpApp({ https: tls });
  const endClock = certificateEndClock(() => ctx.now());
  app.addHook('onRequest', async (request) => {
    const route = `${request.method} ${request.routeOptions.url ?? ''}`;
    // To any other kind the admin API is not there (404, as before it was served here), so that a
    // part learns nothing of it, not even that its certificate is refused.
    let hidden = false;
    authorizePeer(
      request.raw.socket as TLSSocket,
      (_name, kind) => {
        if (request.is404) return true;
        if (isAdminRoute(route) && kind !== 'admin') hidden = true;
        return hidden || mayCallControlPlane(route, kind);
      },
      { now: endClock },
    );
    if (hidden) {
      throw new TrustedMsError('ROUTE_NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`);
    }
  });
  app.register(discoveryRoutes, ctx);
  app.register(revocationFeedRoutes, ctx);
  app.register(loginRoutes, ctx);
  app.register(adminRoutes, ctx);
  return app;
}
