import type { FastifyPluginAsync } from 'fastify';
import { permissionsOf } from '../../../policy/evaluate.js';
import { checkPassword } from '../../../users/users.js';
import type { SecurityContext } from '../context.js';
import { NAME } from '../schemas.js';

/** Posture none: the gateway's password check (HTTP basic), the only authentication there is. */
export const passwordCheckRoutes: FastifyPluginAsync<SecurityContext> = async (app, ctx) => {
  app.post<{ Body: { user: string; password: string } }>(
    '/v1/internal/password',
    {
      schema: {
        body: {
          type: 'object',
          required: ['user', 'password'],
          additionalProperties: false,
          properties: { user: NAME, password: { type: 'string', minLength: 1, maxLength: 1024 } },
        },
      },
    },
    async (request) => {
      ctx.requireLabToken(request);
      const { user: record } = await checkPassword(ctx.store, request.body.user, request.body.password, {
        actor: 'gateway',
      });
      await ctx.refuseRevoked(request, 'auth.password', record.name);
      const roles = (await ctx.store.data()).roles;
      const role = Object.hasOwn(roles, record.role) ? roles[record.role] : undefined;
      return { user: record.name, role: record.role, perms: role ? permissionsOf(role) : {} };
    },
  );
};
