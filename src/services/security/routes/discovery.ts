import type { FastifyPluginAsync } from 'fastify';
import { LAB_TIME_FIELD } from '../../../protocol/lab-clock.js';
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
    keys: ctx.ticketKeys,
    // The lab clock a part starts from (src/protocol/lab-clock.ts).
    [LAB_TIME_FIELD]: Math.floor(ctx.now()),
  }));

  app.get('/v1/services', async () => ({
    defences: ctx.defences,
    services: ctx.registry
      .list()
      .map((s) => (ctx.revocations.quarantined(s.name) ? { ...s, quarantined: true } : s)),
  }));
};
