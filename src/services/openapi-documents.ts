import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Posture } from '../lab/posture.js';
import { ProofVerifier } from '../protocol/proof.js';
import { TicketVerifier } from '../protocol/ticket.js';
import { LabStore } from '../store/store.js';
import { buildGateway } from './gateway/app.js';
import { AttestationTable } from './gateway/attestation-table.js';
import { buildSecurityService } from './security/app.js';
import { labAudience, labIssuer } from './security/issuer.js';
import { ServiceRegistry } from './security/registry.js';

/**
 * The OpenAPI documents of the gateway and the security service, as committed under docs/openapi/:
 * each app built (never listening) with throw-away dependencies, and asked for its document. The
 * gateway's routes depend on the posture (`/auth/basic` exists in `none` only), so its document is
 * the union of the postures' paths.
 */

export type OpenApiDocument = { openapi: string; paths: Record<string, Record<string, unknown>> } & Record<
  string,
  unknown
>;

const LAB = 'openapi';

async function documentOf(app: FastifyInstance): Promise<OpenApiDocument> {
  await app.ready();
  const doc = app.swagger() as unknown as OpenApiDocument;
  await app.close();
  return doc;
}

export async function securityDocument(): Promise<OpenApiDocument> {
  const dir = await mkdtemp(join(tmpdir(), 'tms-openapi-'));
  try {
    const store = new LabStore(dir);
    const signing = generateKeyPairSync('ed25519');
    const app = buildSecurityService({
      labId: LAB,
      posture: 'trusted',
      store,
      registry: new ServiceRegistry(store, 'trusted'),
      signingKey: { kid: 'openapi', privateKey: signing.privateKey },
      sealKey: Buffer.alloc(32),
      labToken: 'openapi',
      ticketTtlSeconds: 60,
      challengeTtlSeconds: 60,
    });
    return await documentOf(app);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export async function gatewayDocument(): Promise<OpenApiDocument> {
  const docs: OpenApiDocument[] = [];
  for (const posture of ['trusted', 'paper', 'none'] as Posture[]) {
    const app = buildGateway({
      posture,
      upstreams: {},
      attestation: new AttestationTable([]),
      verifier: new TicketVerifier({
        keys: new Map(),
        issuer: labIssuer(LAB),
        audience: labAudience(LAB),
        posture: posture === 'trusted' ? 'trusted' : 'paper',
      }),
      sealKey: Buffer.alloc(32),
      proofs: new ProofVerifier(),
      checkPassword: async () => {
        throw new Error('not served');
      },
      log: () => undefined,
    });
    docs.push(await documentOf(app));
  }
  const [first, ...rest] = docs as [OpenApiDocument, ...OpenApiDocument[]];
  const paths = { ...first.paths };
  for (const d of rest) {
    for (const [p, ops] of Object.entries(d.paths)) paths[p] = { ...ops, ...paths[p] };
  }
  return {
    ...first,
    paths: Object.fromEntries(Object.entries(paths).sort(([a], [b]) => a.localeCompare(b))),
  };
}
