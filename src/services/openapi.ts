import { fastifySwagger } from '@fastify/swagger';
import type { FastifyInstance } from 'fastify';

/**
 * The machine-readable description of a server's HTTP API: an OpenAPI 3.1 document generated from
 * its fastify route schemas by @fastify/swagger, served at `GET /openapi.json` and committed under
 * docs/openapi/ (`npm run openapi` writes them; a test fails when one is stale or a route is
 * missing). Call it right after createHttpApp, before the routes.
 */
export function describeApi(app: FastifyInstance, api: { title: string; description: string }): void {
  // Called, not register()ed: the build functions declare their routes synchronously right after,
  // before a registered plugin would have loaded, and the plugin only sees the routes added once its
  // onRoute hook is in place. Its setup is synchronous: a hook and a decorator on this instance.
  fastifySwagger(
    app,
    {
      openapi: {
        openapi: '3.1.0',
        // The API's version, not the package's: bumped when the wire changes (docs/protocol.md).
        info: { title: api.title, description: api.description, version: '1' },
      },
    },
    (err?: Error) => {
      if (err) throw err;
    },
  );
  app.get(
    '/openapi.json',
    { schema: { summary: 'This document: the OpenAPI 3.1 description of this API' } },
    async () => app.swagger(),
  );
}
