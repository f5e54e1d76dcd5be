import type { FastifyPluginAsync } from 'fastify';
import { LAB_TIME_FIELD } from '../../../protocol/lab-clock.js';
import { FEED_FIELD } from '../../../protocol/signed-feed.js';
import type { SecurityContext } from '../context.js';

/** What anyone may read without a credential: health, the ticket-signing keys, the service list. */
export const discoveryRoutes: FastifyPluginAsync<SecurityContext> = async (app, ctx) => {
  app.get('/healthz', async () => ({
    ok: true,
    part: 'security',
    defences: ctx.defences,
    labId: ctx.labId,
  }));

  // feeds:signed: the same content in a signed envelope too (signed-feed.ts), which is all the parts
  // take; the unsigned fields stay for the CLI's readers (service list, lab status), which read them
  // over the admin channel.
  app.get('/v1/keys', async () => {
    const keys = { issuer: ctx.issuer, audience: ctx.audience, keys: ctx.ticketKeys };
    return {
      ...keys,
      ...(ctx.feeds ? { [FEED_FIELD]: ctx.feeds.envelope('keys', keys) } : {}),
      // The lab clock a part starts from (src/protocol/lab-clock.ts).
      [LAB_TIME_FIELD]: Math.floor(ctx.now()),
    };
  });

  app.get('/v1/services', async () => {
    const services = ctx.registry
      .list()
      .map((s) => (ctx.revocations.quarantined(s.name) ? { ...s, quarantined: true } : s));
    return {
      defences: ctx.defences,
      services,
      ...(ctx.feeds
        ? {
            [FEED_FIELD]: ctx.feeds.envelope('services', {
              services: services.map((s) => ({ name: s.name, state: s.state })),
            }),
          }
        : {}),
    };
  });
};
