import type { Server as TlsServer } from 'node:tls';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { FeedGuard } from '../../defences/feeds.js';
import type { Links } from '../../defences/links.js';
import { DEFAULT_PEER_CALLS, PeerCallPolicy, type PeerCallRule } from '../../defences/peer-calls.js';
import type { Defences } from '../../defences/presets.js';
import type { Principal, ServiceAuthenticator } from '../../defences/request/types.js';
import { isTrustedMsError, TrustedMsError } from '../../errors.js';
import type { DbRecord, ServiceDefinition } from '../../kernel/topology.js';
import { permits } from '../../policy/evaluate.js';
import type { Action } from '../../policy/types.js';
import type { RevocationView } from '../../protocol/revocation-list.js';
import { createHttpApp, toHttpError } from '../http.js';

/**
 * The kit every sample microservice of the lab runs: one owner of a few in-memory databases with
 * read/query/write endpoints and an `/overview` that calls its peers with the caller's credentials.
 * Every request is authorized here, whatever the gateway did (principal propagation): the `request`
 * defence says who it acts for (the gateway's `x-tms-*` headers, or the ticket checked here), and
 * with `links:mtls` only the gateway and the services that may call this one get in.
 */

/** One callee, reached over undici in `main.ts` (mTLS in `trusted`). Throws when unreachable. */
export interface PeerClient {
  get(path: string, headers: Record<string, string>): Promise<{ status: number; body: unknown }>;
}

export type SampleDefinition = ServiceDefinition & {
  callers: string[];
  /** caller → what it may ask of this service (the topology's per-edge peer policy); the kit's own calls when absent */
  peerCalls?: Readonly<Record<string, readonly PeerCallRule[]>>;
};

export interface SampleServiceDeps {
  definition: SampleDefinition;
  /** the defences in force, for /healthz; the strategies below carry them out */
  defences: Defences;
  /** request: who a request acts for */
  authenticate: ServiceAuthenticator;
  /** links: the server's TLS and who may call it */
  links: Links;
  /** callee name → client; a callee without one is reported as unavailable. */
  peers: Record<string, PeerClient>;
  /** One line per refusal; no secrets, no tickets. */
  log?: (line: string) => void;
  /** revoked users and quarantined services, kept current by the security service */
  revocations?: RevocationView;
  /** feeds:signed: whether that list is within the lab's staleness bound (plain: always) */
  feeds?: FeedGuard;
}

export interface RecordsBody {
  database: string;
  records: DbRecord[];
}

export interface RecordBody {
  database: string;
  record: DbRecord;
}

export interface OverviewBody {
  service: string;
  records: number;
  peers: Record<string, { status: number; count?: number; code?: string }>;
}

/** Most records a database may grow to through writes (memory stays bounded under a flood). */
export const MAX_RECORDS_PER_DATABASE = 10_000;
const PEER_TIMEOUT_MS = 8000;
const ID_SCHEMA = { type: 'string', minLength: 1, maxLength: 128 } as const;
const PARAMS = {
  type: 'object',
  required: ['db'],
  properties: { db: { type: 'string', maxLength: 64 }, id: ID_SCHEMA },
} as const;

export function buildSampleService(deps: SampleServiceDeps): FastifyInstance {
  const { definition, links } = deps;
  const log = deps.log ?? (() => {});
  const ownDatabases = Object.keys(definition.databases);
  const firstDatabase = ownDatabases[0];
  const data = new Map<string, Map<string, DbRecord>>(
    ownDatabases.map((db) => [
      db,
      new Map((structuredClone(definition.databases[db]) ?? []).map((r) => [r.id, r])),
    ]),
  );
  const callers = new Set(definition.callers);
  const peerCalls = new PeerCallPolicy(
    definition.peerCalls ?? Object.fromEntries(definition.callers.map((c) => [c, DEFAULT_PEER_CALLS])),
    ownDatabases,
  );
  const principals = new WeakMap<FastifyRequest, Principal>();
  /** peer name → its first database, learnt from its /healthz. */
  const peerDatabases = new Map<string, string>();

  const app = createHttpApp({
    ...(links.serverTls ? { https: links.serverTls } : {}),
    // `where` values are a union type: ajv then keeps each value's own type (anyOf would coerce).
    ajv: { customOptions: { allowUnionTypes: true } },
    // Router refusals (a parameter over 100 characters, a malformed %-escape) bypass the error
    // handler: give them the lab's contract too.
    frameworkErrors: (err, request, reply) => {
      log(`${definition.name}: refused ${request.method} ${pathOf(request.url)}: INVALID_INPUT`);
      (reply as FastifyReply).code(400).send({
        code: 'INVALID_INPUT',
        message: err.code === 'FST_ERR_BAD_URL' ? 'malformed URL' : 'path parameter too long',
      });
    },
  });

  // A renewed identity serves new handshakes at once; connections already open keep theirs.
  const stopRenewals = links.onRenewed(() => {
    if (links.serverTls) (app.server as unknown as TlsServer).setSecureContext(links.serverTls);
  });
  app.addHook('onClose', async () => {
    stopRenewals();
  });

  app.addHook('onError', async (request, _reply, error) => {
    const code = toHttpError(error).code;
    log(`${definition.name}: refused ${request.method} ${pathOf(request.url)}: ${code}`);
  });

  app.addHook('onRequest', async (request) => {
    if (pathOf(request.url) === '/healthz') return;
    // Who may call, and with which ticket, is judged on the revocation list: not on a stale one.
    deps.feeds?.assertFresh();
    let callingService: string | undefined;
    links.authorizeCaller(request.raw.socket, (peer, kind) => {
      // Its certificate may still be valid: a quarantine is known by name, from the feed.
      if (kind === 'service' && deps.revocations?.quarantined(peer) === true) {
        throw new TrustedMsError('PEER_QUARANTINED', `peer "${peer}" is quarantined`);
      }
      // Nor does a certificate outlive a failed attestation: the feed names the service at once.
      if (kind === 'service' && deps.revocations?.untrusted(peer) === true) {
        throw new TrustedMsError('PEER_UNTRUSTED', `peer "${peer}" has not passed attestation`);
      }
      if (kind === 'service') callingService = peer;
      return kind === 'gateway' || (kind === 'service' && callers.has(peer));
    });
    // A caller of ours may make only the requests its edge allows, whatever ticket it carries.
    if (callingService !== undefined) peerCalls.check(callingService, request.method, pathOf(request.url));
    if (request.is404) return;
    principals.set(request, deps.authenticate.authenticate(request.headers));
  });

  /** preValidation: the database is ours and the principal may do `action` on it (before any body check). */
  const authorize =
    (action: Action) =>
    async (request: FastifyRequest): Promise<void> => {
      const db = (request.params as { db?: unknown }).db;
      if (typeof db !== 'string' || !data.has(db)) {
        throw new TrustedMsError('ROUTE_NOT_FOUND', `${definition.name} has no such database`);
      }
      const principal = principals.get(request) as Principal;
      if (!permits(principal.perms, db, action)) {
        throw new TrustedMsError('ACCESS_DENIED', `${action} on ${db} is not allowed for this user`);
      }
    };

  const table = (db: string): Map<string, DbRecord> => data.get(db) as Map<string, DbRecord>;

  app.get('/healthz', async () => ({
    ok: true,
    service: definition.name,
    defences: deps.defences,
    databases: ownDatabases,
    ...(deps.feeds ? { feeds: deps.feeds.status() } : {}),
  }));

  app.get<{ Params: { db: string } }>(
    '/db/:db/records',
    { schema: { params: PARAMS }, preValidation: authorize('read') },
    async (request): Promise<RecordsBody> => ({
      database: request.params.db,
      records: [...table(request.params.db).values()],
    }),
  );

  app.get<{ Params: { db: string; id: string } }>(
    '/db/:db/records/:id',
    { schema: { params: PARAMS }, preValidation: authorize('read') },
    async (request): Promise<RecordBody> => {
      const record = table(request.params.db).get(request.params.id);
      if (record === undefined) throw new TrustedMsError('RECORD_NOT_FOUND', 'no such record');
      return { database: request.params.db, record };
    },
  );

  app.post<{ Params: { db: string }; Body: { where: Record<string, string | number | boolean> } }>(
    '/db/:db/query',
    {
      schema: {
        params: PARAMS,
        body: {
          type: 'object',
          required: ['where'],
          additionalProperties: false,
          properties: {
            where: {
              type: 'object',
              maxProperties: 16,
              propertyNames: { maxLength: 64 },
              additionalProperties: { type: ['string', 'number', 'boolean'] },
            },
          },
        },
      },
      preValidation: authorize('query'),
    },
    async (request): Promise<RecordsBody> => {
      const where = Object.entries(request.body.where);
      const records = [...table(request.params.db).values()].filter((r) =>
        where.every(([k, v]) => Object.hasOwn(r, k) && r[k] === v),
      );
      return { database: request.params.db, records };
    },
  );

  app.put<{ Params: { db: string; id: string }; Body: { record: Record<string, unknown> } }>(
    '/db/:db/records/:id',
    {
      schema: {
        params: PARAMS,
        body: {
          type: 'object',
          required: ['record'],
          additionalProperties: false,
          properties: { record: { type: 'object', maxProperties: 64 } },
        },
      },
      preValidation: authorize('write'),
    },
    async (request): Promise<RecordBody & { created: boolean }> => {
      const { db, id } = request.params;
      const records = table(db);
      const created = !records.has(id);
      if (created && records.size >= MAX_RECORDS_PER_DATABASE) {
        throw new TrustedMsError('PAYLOAD_TOO_LARGE', `${db} is full`);
      }
      const record: DbRecord = { ...request.body.record, id };
      records.set(id, record);
      return { database: db, record, created };
    },
  );

  app.get('/overview', async (request): Promise<OverviewBody> => {
    const principal = principals.get(request) as Principal;
    if (firstDatabase === undefined || !permits(principal.perms, firstDatabase, 'read')) {
      throw new TrustedMsError('ACCESS_DENIED', `read on ${firstDatabase ?? 'this service'} is not allowed`);
    }
    const entries = await Promise.all(
      definition.calls.map(async (name) => [name, await askPeer(name, principal.forward)] as const),
    );
    return {
      service: definition.name,
      records: table(firstDatabase).size,
      peers: Object.fromEntries(entries),
    };
  });

  /** One peer's answer to reading its first database with the caller's credentials; never throws. */
  const askPeer = async (
    name: string,
    forward: Record<string, string>,
  ): Promise<{ status: number; count?: number; code?: string }> => {
    const peer = deps.peers[name];
    if (peer === undefined) return { status: 502, code: 'SERVICE_UNAVAILABLE' };
    // Never hand the caller's ticket to a quarantined service.
    if (deps.revocations?.quarantined(name) === true) return { status: 503, code: 'SERVICE_QUARANTINED' };
    try {
      return await withTimeout(async () => {
        let db = peerDatabases.get(name);
        if (db === undefined) {
          const health = await peer.get('/healthz', {});
          const first = (health.body as { databases?: unknown } | null)?.databases;
          if (health.status !== 200 || !Array.isArray(first) || typeof first[0] !== 'string') {
            return { status: health.status >= 400 ? health.status : 502, code: codeOf(health.body) };
          }
          db = first[0];
          peerDatabases.set(name, db);
        }
        const res = await peer.get(`/db/${encodeURIComponent(db)}/records`, forward);
        const records = (res.body as { records?: unknown } | null)?.records;
        if (res.status === 200 && Array.isArray(records)) return { status: 200, count: records.length };
        return { status: res.status, code: codeOf(res.body) };
      });
    } catch (err) {
      return { status: 502, code: isTrustedMsError(err) ? err.code : 'SERVICE_UNAVAILABLE' };
    }
  };

  return app;
}

function codeOf(body: unknown): string {
  const code = (body as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code.slice(0, 64) : 'SERVICE_UNAVAILABLE';
}

function pathOf(url: string): string {
  const q = url.indexOf('?');
  return (q === -1 ? url : url.slice(0, q)).slice(0, 200);
}

async function withTimeout<T>(run: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new TrustedMsError('SERVICE_UNAVAILABLE', 'peer timed out')),
      PEER_TIMEOUT_MS,
    );
  });
  try {
    return await Promise.race([run(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
