import type { FastifyPluginAsync } from 'fastify';
import type { SecurityContext } from '../context.js';

/** What anyone may read without a credential: health, the ticket-signing keys, the service list. */
export const discoveryRoutes: FastifyPluginAsync<SecurityContext> = async (app, ctx) => {
  app.get('/healthz', async () => ({
    ok: true,
    part: 'security',
    defences: ctx.defences,
    labId: ctx.labId,
  }));

  app.get('/v1/keys', async () => ({
    issuer: ctx.issuer,
    audience: ctx.audience,
    keys: [{ kid: ctx.signingKey.kid, alg: 'EdDSA', publicKeyPem: ctx.publicKeyPem }],
  }));

  app.get('/v1/services', async () => ({
    defences: ctx.defences,
    services: ctx.registry
      .list()
      .map((s) => (ctx.revocations.quarantined(s.name) ? { ...s, quarantined: true } : s)),
  }));
};
