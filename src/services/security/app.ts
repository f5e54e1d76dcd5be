import type { FastifyInstance } from 'fastify';
import { connectionLimitsFor } from '../../defences/limits.js';
import { loginsOnlyFromGateway } from '../../defences/part-credentials.js';
import type { ServerTlsOptions } from '../../pki/mtls.js';
import { guardConnections } from '../connection-guard.js';
import { createHttpApp } from '../http.js';
import { describeApi } from '../openapi.js';
import { type SecurityDeps, securityContext } from './context.js';
import { buildControlPlane } from './control-plane.js';
import { adminRoutes } from './routes/admin.js';
import { discoveryRoutes } from './routes/discovery.js';
import { loginRoutes, refuseLoginsPastTheGateway } from './routes/login.js';
import { passwordCheckRoutes } from './routes/password-check.js';
import { revocationFeedRoutes } from './routes/revocations.js';
import { selfReportRoutes } from './routes/self-report.js';

export { labAudience, labIssuer } from '../../protocol/issuer.js';
export type { SecurityDeps } from './context.js';

/**
 * The security service: owns users, keys, the service registry and the audit log while the lab
 * runs, authenticates users (password, then a signed challenge or the paper's encrypted ticket)
 * and issues the session tickets every other part verifies offline. Each concept is a plugin in
 * routes/, handed the same context.
 */
export function buildSecurityService(deps: SecurityDeps): FastifyInstance {
  return buildSecurityApps(deps).app;
}

/**
 * The security service's listeners from one context (one lock-out, one revocation book): the plain
 * one (logins, the CLI's admin API) and, given the TLS options of its identity (links:mtls), the
 * control-plane listener the other parts use (control-plane.ts).
 */
export function buildSecurityApps(
  deps: SecurityDeps,
  controlTls?: ServerTlsOptions,
): { app: FastifyInstance; control?: FastifyInstance } {
  const app = createHttpApp();
  // Clients reach this port directly (the admin API; logins too unless links:mtls, below).
  const connections = connectionLimitsFor(deps.defences.limits);
  if (connections) guardConnections(app.server, connections);
  describeApi(app, {
    title: 'trusted-ms security service',
    description:
      'Users, keys, logins (docs/protocol.md), the service registry, revocations, and the admin API the CLI uses while a lab runs (lab token).',
  });
  const ctx = securityContext(deps);
  // The lock-out's last changes are written before the service goes (a kill -9 loses at most ~1 s).
  app.addHook('onClose', async () => {
    await ctx.loginLimits.lockout?.close();
  });
  // links:mtls: the gateway relays logins on the control plane, where its certificate says it is the
  // gateway; here anyone could send them past its per-address login meters (accounts.login-bypass).
  if (controlTls !== undefined && loginsOnlyFromGateway(deps.defences)) {
    app.addHook('onRequest', refuseLoginsPastTheGateway(ctx));
  }
  app.register(discoveryRoutes, ctx);
  app.register(revocationFeedRoutes, ctx);
  app.register(loginRoutes, ctx);
  app.register(passwordCheckRoutes, ctx);
  app.register(selfReportRoutes, ctx);
  app.register(adminRoutes, ctx);
  if (controlTls === undefined) return { app };
  const control = buildControlPlane(ctx, controlTls);
  // Anyone can open sockets to it before the handshake says who they are: the red team held ~4,096
  // silent ones from one address and the gateway, restarted meanwhile, never came back.
  if (connections) guardConnections(control.server, connections);
  return { app, control };
}
