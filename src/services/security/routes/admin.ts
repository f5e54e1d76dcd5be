import type { FastifyPluginAsync } from 'fastify';
import type { SecurityContext } from '../context.js';
import { adminIdentityRoutes } from './admin-identities.js';
import { adminServiceRoutes } from './admin-services.js';
import { adminUserRoutes } from './admin-users.js';
import { adminRevocationRoutes } from './revocations.js';

/**
 * The admin API: how the CLI writes while the lab runs (the service is the store's only writer).
 * The lab token is checked before anything else, the body included.
 */
export const adminRoutes: FastifyPluginAsync<SecurityContext> = async (admin, ctx) => {
  admin.addHook('onRequest', async (request) => ctx.requireLabToken(request));
  await admin.register(adminRevocationRoutes, ctx);
  await admin.register(adminServiceRoutes, ctx);
  await admin.register(adminUserRoutes, ctx);
  await admin.register(adminIdentityRoutes, ctx);
};
