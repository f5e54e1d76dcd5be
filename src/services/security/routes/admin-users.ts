import type { FastifyPluginAsync } from 'fastify';
import type { UserKey } from '../../../store/schema.js';
import {
  addUser,
  addUserKey,
  checkPassword,
  getUser,
  importHtpasswd,
  removeUser,
  removeUserKey,
  replaceUserKeys,
  toPublicUser,
} from '../../../users/users.js';
import type { SecurityContext } from '../context.js';
import { B64URL, NAME } from '../schemas.js';

/**
 * Admin (behind the lab token, see admin.ts): users and their keys. A change that ends tickets
 * (a user or key removed or replaced) publishes the revocation list again.
 */
export const adminUserRoutes: FastifyPluginAsync<SecurityContext> = async (admin, ctx) => {
  const { store, revocations } = ctx;

  admin.post<{ Body: { name: string; role: string; password: string } }>(
    '/v1/admin/users',
    {
      schema: {
        body: {
          type: 'object',
          required: ['name', 'role', 'password'],
          additionalProperties: false,
          properties: {
            name: NAME,
            role: NAME,
            password: { type: 'string', minLength: 1, maxLength: 1024 },
          },
        },
      },
    },
    async (request) => {
      const banned = revocations.userRevoked(request.body.name);
      const user = toPublicUser(await addUser(store, request.body, { actor: 'admin' }));
      if (banned) await revocations.publish(); // the name of a removed user is free to log in again
      return user;
    },
  );
  admin.delete<{ Params: { name: string } }>('/v1/admin/users/:name', async (request) => {
    const user = toPublicUser(await removeUser(store, request.params.name, { actor: 'admin' }));
    await revocations.publish(); // its tickets go with it
    return user;
  });
  admin.post<{ Params: { name: string }; Body: { key: UserKey; replace?: boolean } }>(
    '/v1/admin/users/:name/keys',
    {
      schema: {
        body: {
          type: 'object',
          required: ['key'],
          properties: {
            replace: { type: 'boolean' },
            key: {
              type: 'object',
              required: ['thumbprint', 'type', 'publicKeyPem', 'createdAt'],
              additionalProperties: false,
              properties: {
                thumbprint: B64URL,
                type: { enum: ['ed25519', 'rsa'] },
                bits: { type: 'integer' },
                publicKeyPem: { type: 'string', maxLength: 4096 },
                createdAt: { type: 'string', maxLength: 64 },
              },
            },
          },
        },
      },
    },
    async (request) => {
      const { key, replace } = request.body;
      if (replace) {
        const user = toPublicUser(await replaceUserKeys(store, request.params.name, key, { actor: 'admin' }));
        await revocations.publish(); // the replaced keys' tickets go with them
        return user;
      }
      return toPublicUser(await addUserKey(store, request.params.name, key, { actor: 'admin' }));
    },
  );
  admin.delete<{ Params: { name: string; thumbprint: string } }>(
    '/v1/admin/users/:name/keys/:thumbprint',
    async (request) => {
      const r = await removeUserKey(store, request.params.name, request.params.thumbprint, {
        actor: 'admin',
      });
      await revocations.publish(); // the tickets bound to the key go with it
      return { user: toPublicUser(r.user), removed: r.removed, notBefore: r.notBefore };
    },
  );
  admin.post<{ Body: { text: string; role: string } }>(
    '/v1/admin/users/import',
    {
      bodyLimit: 1024 * 1024 + 4096,
      schema: {
        body: {
          type: 'object',
          required: ['text', 'role'],
          properties: { text: { type: 'string', maxLength: 1024 * 1024 }, role: NAME },
        },
      },
    },
    async (request) => {
      const imported = await importHtpasswd(store, request.body.text, request.body.role, {
        actor: 'admin',
      });
      if (imported.some((name) => revocations.userRevoked(name))) await revocations.publish();
      return { imported };
    },
  );
  admin.post<{ Params: { name: string }; Body: { password: string } }>(
    '/v1/admin/users/:name/check-password',
    {
      schema: {
        body: {
          type: 'object',
          required: ['password'],
          additionalProperties: false,
          properties: { password: { type: 'string', minLength: 1, maxLength: 1024 } },
        },
      },
    },
    async (request) => ({
      upgraded: (await checkPassword(store, request.params.name, request.body.password, { actor: 'admin' }))
        .upgraded,
    }),
  );
  admin.get<{ Params: { name: string } }>('/v1/admin/users/:name', async (request) =>
    toPublicUser(await getUser(store, request.params.name)),
  );
};
