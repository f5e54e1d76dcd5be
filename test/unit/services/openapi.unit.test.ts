import { readFile } from 'node:fs/promises';
import type { FastifyInstance } from 'fastify';
import { describe, expect, it, vi } from 'vitest';
import {
  gatewayDocument,
  type OpenApiDocument,
  securityDocument,
} from '../../../src/services/openapi-documents.js';

/**
 * The committed OpenAPI documents (docs/openapi/*.json): every route each server really serves is
 * in its document, and the committed files are what the code generates now (`npm run openapi`).
 * The served routes are recorded by a hook put on each app the moment it is created, apart from
 * the OpenAPI plugin, so a route the plugin misses (declared before it, or hidden) fails here.
 */

const served = vi.hoisted(() => [] as { method: string; url: string }[]);
vi.mock('../../../src/services/http.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../../src/services/http.js')>();
  return {
    ...real,
    // The real app, with a recorder: a passthrough, not a stand-in.
    createHttpApp: (...args: Parameters<typeof real.createHttpApp>): FastifyInstance => {
      const app = real.createHttpApp(...args);
      app.addHook('onRoute', (r) => {
        for (const method of [r.method].flat()) {
          // fastify adds HEAD to every GET by itself; OpenAPI describes the GET.
          if (method !== 'HEAD' || r.exposeHeadRoute === false) served.push({ method, url: r.url });
        }
      });
      return app;
    },
  };
});

/** fastify's `/a/:name/*` as OpenAPI writes it: `/a/{name}/{*}`. */
const openApiPath = (url: string) => url.replace(/:([A-Za-z0-9_]+)/g, '{$1}').replace(/\*$/, '{*}');

function missing(doc: OpenApiDocument): string[] {
  return served
    .filter((r) => {
      const ops = doc.paths[openApiPath(r.url)];
      return ops === undefined || !(r.method.toLowerCase() in ops);
    })
    .map((r) => `${r.method} ${r.url}`);
}

const committed = async (name: string) =>
  JSON.parse(await readFile(new URL(`../../../docs/openapi/${name}.json`, import.meta.url), 'utf8'));

describe.each([
  ['security', securityDocument],
  ['gateway', gatewayDocument],
] as const)('docs/openapi/%s.json', (name, generate) => {
  it('describes every route the server serves, as OpenAPI 3.1', async () => {
    served.length = 0;
    const doc = await generate();
    expect(served.length).toBeGreaterThan(5);
    expect(doc.openapi).toBe('3.1.0');
    expect(missing(doc)).toEqual([]);
    expect(served.map((r) => r.url)).toContain('/openapi.json');
    expect(served.map((r) => r.url)).toContain('/v1/auth/challenge');
  });

  it('is current: what `npm run openapi` writes now', async () => {
    expect(await committed(name)).toEqual(JSON.parse(JSON.stringify(await generate())));
  });
});

describe('the check itself', () => {
  it('fails for a document without one of the routes', async () => {
    served.length = 0;
    const doc = await securityDocument();
    const { '/v1/auth/verify': _gone, ...paths } = doc.paths;
    expect(missing({ ...doc, paths })).toEqual(['POST /v1/auth/verify']);
  });
});
