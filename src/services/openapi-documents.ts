import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { AttestationTable } from '../defences/attestation-table.js';
import { HTTP_EDGE } from '../defences/edge.js';
import { metersFor } from '../defences/limits.js';
import type { Posture } from '../defences/posture.js';
import { defencesFor, ticketKindOf } from '../defences/presets.js';
import { labAudience, labIssuer } from '../protocol/issuer.js';
import { ProofVerifier } from '../protocol/proof.js';
import { TicketVerifier } from '../protocol/ticket.js';
import { FileLabStore } from '../store/file-lab-store.js';
import { buildGateway } from './gateway/app.js';
import { gatewayStrategies } from './gateway/assemble.js';
import { buildSecurityService } from './security/app.js';
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
/** Limits to build a gateway with: never used, the gateway does not listen. */
const OPENAPI_LIMITS = {
  perUser: 1,
  userBurst: 1,
  userMaxWaitMs: 0,
  perClient: 1,
  burst: 1,
  loginsPerClient: 1,
  loginFailuresPerClient: 1,
  loginFailureBurst: 1,
  loginsInFlightPerClient: 1,
};

async function documentOf(app: FastifyInstance): Promise<OpenApiDocument> {
  await app.ready();
  const doc = app.swagger() as unknown as OpenApiDocument;
  await app.close();
  return doc;
}

export async function securityDocument(): Promise<OpenApiDocument> {
  const dir = await mkdtemp(join(tmpdir(), 'tms-openapi-'));
  try {
    const store = new FileLabStore(dir);
    const signing = generateKeyPairSync('ed25519');
    const app = buildSecurityService({
      labId: LAB,
      defences: defencesFor('trusted'),
      store,
      registry: new ServiceRegistry(store, 'measured'),
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
    const attestation = new AttestationTable([]);
    const upstream = { request: async () => Promise.reject(new Error('not served')) };
    const app = buildGateway({
      edge: HTTP_EDGE,
      ...gatewayStrategies(defencesFor(posture), {
        attestation,
        verifier: new TicketVerifier({
          keys: new Map(),
          issuer: labIssuer(LAB),
          audience: labAudience(LAB),
          posture: ticketKindOf(defencesFor(posture).login) ?? 'paper',
        }),
        sealKey: Buffer.alloc(32),
        proofs: new ProofVerifier(),
        checkPassword: async () => {
          throw new Error('not served');
        },
        auth: upstream,
        meters: metersFor(OPENAPI_LIMITS),
      }),
      upstreams: {},
      attestation,
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
