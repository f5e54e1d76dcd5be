import { generateKeyPairSync, randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { Agent, type Dispatcher, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MutualTls, PLAIN_LINKS } from '../../../src/defences/links.js';
import type { Posture } from '../../../src/defences/posture.js';
import { defencesFor } from '../../../src/defences/presets.js';
import { GATEWAY_VOUCHES, TicketAtService } from '../../../src/defences/request/service.js';
import { labTopology } from '../../../src/kernel/topology.js';
import { createLabCa, type LabCa } from '../../../src/pki/ca.js';
import {
  issueServiceCertificate,
  type ServiceIdentity,
  type ServiceKind,
} from '../../../src/pki/identity.js';
import { clientTlsConnector } from '../../../src/pki/mtls.js';
import { permissionsOf } from '../../../src/policy/evaluate.js';
import { defaultRoles } from '../../../src/policy/roles.js';
import { issueTicket, type TicketClaims, TicketVerifier } from '../../../src/protocol/ticket.js';
import {
  buildSampleService,
  type OverviewBody,
  type PeerClient,
  type SampleDefinition,
} from '../../../src/services/sample/app.js';

const HOST = '127.0.0.1';
const LAB_ID = 'lab-sample';
const ISSUER = `trusted-ms://${LAB_ID}/security`;
const AUDIENCE = `trusted-ms://${LAB_ID}`;
const SIGNING = { kid: 'k1', ...generateKeyPairSync('ed25519') };
const FORGER = { kid: 'k1', ...generateKeyPairSync('ed25519') };
const ROLES = defaultRoles();

interface Res {
  status: number;
  body: { code?: string } & Record<string, unknown>;
}

/** One real HTTP(S) request on 127.0.0.1 with timeouts; the body parsed as JSON when it is. */
async function call(
  base: string,
  path: string,
  opts: {
    method?: Dispatcher.HttpMethod;
    headers?: Record<string, string>;
    body?: string;
    dispatcher?: Agent;
  } = {},
): Promise<Res> {
  const res = await request(new URL(path, base), {
    method: opts.method ?? 'GET',
    headers: { ...(opts.body === undefined ? {} : { 'content-type': 'application/json' }), ...opts.headers },
    ...(opts.body === undefined ? {} : { body: opts.body }),
    ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}),
    headersTimeout: 5000,
    bodyTimeout: 5000,
  });
  const text = await res.body.text();
  let body: Res['body'];
  try {
    body = JSON.parse(text);
  } catch {
    body = { text };
  }
  return { status: res.statusCode, body };
}

function definition(name: string): SampleDefinition {
  const services = labTopology().services;
  const s = services.find((x) => x.name === name);
  if (s === undefined) throw new Error(`no service ${name}`);
  return { ...s, callers: services.filter((x) => x.calls.includes(name)).map((x) => x.name) };
}

function claims(posture: 'paper' | 'trusted', role: string, extra: Partial<TicketClaims> = {}): TicketClaims {
  const now = Math.floor(Date.now() / 1000);
  const r = ROLES[role];
  if (r === undefined) throw new Error(`no role ${role}`);
  return {
    v: 1,
    iss: ISSUER,
    aud: AUDIENCE,
    sub: 'alice',
    role,
    perms: permissionsOf(r),
    iat: now - 10,
    exp: now + 600,
    jti: randomBytes(16).toString('base64url'),
    posture,
    ...(posture === 'trusted'
      ? { cnf: { jkt: randomBytes(32).toString('base64url'), sk: randomBytes(60).toString('base64url') } }
      : {}),
    ...extra,
  };
}

/** The credentials a gateway would pass on for `role` in `posture`. */
function creds(posture: Posture, role: string): Record<string, string> {
  if (posture === 'none') {
    const r = ROLES[role];
    if (r === undefined) throw new Error(`no role ${role}`);
    return { 'x-tms-user': 'alice', 'x-tms-role': role, 'x-tms-perms': JSON.stringify(permissionsOf(r)) };
  }
  return { authorization: `Bearer ${issueTicket(SIGNING, claims(posture, role))}` };
}

let ca: LabCa;
const ids: Record<string, ServiceIdentity> = {};
const agents: Agent[] = [];
const apps: FastifyInstance[] = [];

beforeAll(async () => {
  ca = await createLabCa({ labId: LAB_ID });
  const wanted: [string, ServiceKind][] = [
    ['orders', 'service'],
    ['customers', 'service'],
    ['inventory', 'service'],
    ['payroll', 'service'],
    ['gateway', 'gateway'],
  ];
  for (const [name, kind] of wanted) ids[name] = await issueServiceCertificate(ca, { name, kind });
});

afterAll(async () => {
  await Promise.allSettled(apps.map((a) => a.close()));
  await Promise.allSettled(agents.map((a) => a.destroy()));
});

/** An mTLS client presenting `from`'s certificate to the service `to`. */
function mtls(from: string, to: string): Agent {
  const agent = new Agent({
    connect: { ...clientTlsConnector(ids[from] as ServiceIdentity, ca.certPem, to), timeout: 2000 },
  });
  agents.push(agent);
  return agent;
}

function peerClient(base: string, dispatcher?: Agent): PeerClient {
  return {
    get: async (path, headers) => {
      const res = await call(base, path, { headers, ...(dispatcher ? { dispatcher } : {}) });
      return { status: res.status, body: res.body };
    },
  };
}

/** Starts one kit instance on 127.0.0.1:0 and returns its base URL. */
async function start(
  posture: Posture,
  name: string,
  peers: Record<string, PeerClient> = {},
  peerCalls?: SampleDefinition['peerCalls'],
): Promise<string> {
  const defences = defencesFor(posture);
  const app = buildSampleService({
    definition: { ...definition(name), ...(peerCalls ? { peerCalls } : {}) },
    defences,
    peers,
    authenticate:
      posture === 'none'
        ? GATEWAY_VOUCHES
        : new TicketAtService(
            new TicketVerifier({
              keys: new Map([['k1', SIGNING.publicKey]]),
              issuer: ISSUER,
              audience: AUDIENCE,
              posture,
            }),
          ),
    links: posture === 'trusted' ? new MutualTls(ids[name] as ServiceIdentity, ca.certPem) : PLAIN_LINKS,
  });
  apps.push(app);
  await app.listen({ host: HOST, port: 0 });
  const { port } = app.server.address() as { port: number };
  return `${posture === 'trusted' ? 'https' : 'http'}://${HOST}:${port}`;
}

describe.each(['none', 'paper', 'trusted'] as const)('sample service, posture %s', (posture) => {
  let orders: string;
  let customers: string;
  /** Requests as the gateway would send them (over mTLS as the gateway in trusted). */
  let gw: { dispatcher?: Agent };

  beforeAll(async () => {
    const peerAgent = (to: string) => (posture === 'trusted' ? mtls('orders', to) : undefined);
    customers = await start(posture, 'customers');
    const inventory = await start(posture, 'inventory');
    orders = await start(posture, 'orders', {
      customers: peerClient(customers, peerAgent('customers')),
      inventory: peerClient(inventory, peerAgent('inventory')),
    });
    gw = posture === 'trusted' ? { dispatcher: mtls('gateway', 'orders') } : {};
  });

  const get = (path: string, headers: Record<string, string> = {}) => call(orders, path, { headers, ...gw });
  const send = (method: Dispatcher.HttpMethod, path: string, body: string, role = 'clerk') =>
    call(orders, path, { method, body, headers: creds(posture, role), ...gw });

  it('answers /healthz without credentials', async () => {
    const res = await get('/healthz');
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ ok: true, service: 'orders', defences: defencesFor(posture) });
  });

  it('lets an allowed role read, query and write', async () => {
    const list = await get('/db/orders/records', creds(posture, 'clerk'));
    expect(list.status).toBe(200);
    expect((list.body.records as unknown[]).length).toBeGreaterThanOrEqual(3);

    const one = await get('/db/orders/records/ord-2', creds(posture, 'analyst'));
    expect(one.status).toBe(200);
    expect(one.body.record).toMatchObject({ id: 'ord-2', customer: 'cust-2' });

    const q = await send(
      'POST',
      '/db/orders/query',
      JSON.stringify({ where: { customer: 'cust-1', quantity: 2 } }),
    );
    expect(q.status).toBe(200);
    expect((q.body.records as { id: string }[]).map((r) => r.id)).toEqual(['ord-1']);

    const put = await send(
      'PUT',
      '/db/orders/records/ord-9',
      JSON.stringify({ record: { id: 'ord-1', customer: 'cust-3', quantity: 7 } }),
    );
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ created: true, record: { id: 'ord-9', quantity: 7 } });
    const back = await get('/db/orders/records/ord-9', creds(posture, 'clerk'));
    expect(back.body.record).toMatchObject({ id: 'ord-9', customer: 'cust-3' });
    expect((await get('/db/orders/records/ord-1', creds(posture, 'clerk'))).body.record).toMatchObject({
      customer: 'cust-1',
    });
  });

  it('answers RECORD_NOT_FOUND for an unknown id and 404 for a database it does not own', async () => {
    const missing = await get('/db/orders/records/ord-404', creds(posture, 'clerk'));
    expect([missing.status, missing.body.code]).toEqual([404, 'RECORD_NOT_FOUND']);
    const foreign = await get('/db/customers/records', creds(posture, 'admin'));
    expect([foreign.status, foreign.body.code]).toEqual([404, 'ROUTE_NOT_FOUND']);
  });

  it('refuses a database or action outside the role with 403 ACCESS_DENIED', async () => {
    const res = await call(customers, '/db/customers/records', {
      headers: creds(posture, 'analyst'),
      ...(posture === 'trusted' ? { dispatcher: mtls('gateway', 'customers') } : {}),
    });
    expect([res.status, res.body.code]).toEqual([403, 'ACCESS_DENIED']);
    const write = await send('PUT', '/db/orders/records/ord-1', JSON.stringify({ record: {} }), 'analyst');
    expect([write.status, write.body.code]).toEqual([403, 'ACCESS_DENIED']);
    const query = await send('POST', '/db/orders/query', JSON.stringify({ where: {} }), 'guest');
    expect([query.status, query.body.code]).toEqual([403, 'ACCESS_DENIED']);
  });

  it('refuses a request without credentials with 401 TICKET_MISSING', async () => {
    const res = await get('/db/orders/records');
    expect([res.status, res.body.code]).toEqual([401, 'TICKET_MISSING']);
    const overview = await get('/overview');
    expect([overview.status, overview.body.code]).toEqual([401, 'TICKET_MISSING']);
  });

  if (posture === 'none') {
    it('refuses malformed principal headers with 401', async () => {
      for (const perms of ['{', '[]', '{"orders":"read"}', '{"orders":["steal"]}']) {
        const res = await get('/db/orders/records', {
          'x-tms-user': 'a',
          'x-tms-role': 'clerk',
          'x-tms-perms': perms,
        });
        expect([res.status, res.body.code]).toEqual([401, 'TICKET_INVALID']);
      }
    });
  } else {
    it('refuses forged, tampered, expired and wrong-posture tickets with 401', async () => {
      const forged = issueTicket(FORGER, claims(posture, 'admin'));
      const [h, p, s] = issueTicket(SIGNING, claims(posture, 'guest')).split('.') as [string, string, string];
      const payload = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as TicketClaims;
      const tampered = `${h}.${Buffer.from(JSON.stringify({ ...payload, role: 'admin', perms: { '*': ['read'] } })).toString('base64url')}.${s}`;
      const now = Math.floor(Date.now() / 1000);
      const expired = issueTicket(SIGNING, claims(posture, 'clerk', { iat: now - 600, exp: now - 1 }));
      const other = issueTicket(SIGNING, claims(posture === 'paper' ? 'trusted' : 'paper', 'clerk'));
      const cases: [string, string][] = [
        [forged, 'TICKET_INVALID'],
        [tampered, 'TICKET_INVALID'],
        ['not-a-ticket', 'TICKET_INVALID'],
        [expired, 'TICKET_EXPIRED'],
        [other, 'TICKET_INVALID'],
      ];
      for (const [ticket, code] of cases) {
        const res = await get('/db/orders/records', { authorization: `Bearer ${ticket}` });
        expect([res.status, res.body.code]).toEqual([401, code]);
      }
      // The gateway's own headers mean nothing here.
      const headers = creds('none', 'admin');
      const res = await get('/db/orders/records', headers);
      expect([res.status, res.body.code]).toEqual([401, 'TICKET_MISSING']);
    });
  }

  it('passes the caller on to its peers: /overview reports a peer refusal without failing', async () => {
    const clerk = await get('/overview', creds(posture, 'clerk'));
    expect(clerk.status).toBe(200);
    const body = clerk.body as unknown as OverviewBody;
    expect(body.service).toBe('orders');
    expect(body.records).toBeGreaterThanOrEqual(3);
    expect(body.peers).toEqual({
      customers: { status: 200, count: 3 },
      inventory: { status: 200, count: 3 },
    });

    const analyst = await get('/overview', creds(posture, 'analyst'));
    expect(analyst.status).toBe(200);
    expect((analyst.body as unknown as OverviewBody).peers).toEqual({
      customers: { status: 403, code: 'ACCESS_DENIED' },
      inventory: { status: 200, count: 3 },
    });

    const guest = await get('/overview', creds(posture, 'guest'));
    expect([guest.status, guest.body.code]).toEqual([403, 'ACCESS_DENIED']);
  });

  it('answers bad input with a 4xx and a code, never a 5xx', async () => {
    const cases: [Dispatcher.HttpMethod, string, string, number, string][] = [
      ['POST', '/db/orders/query', '{"where":', 400, 'INVALID_INPUT'],
      ['POST', '/db/orders/query', '{"where":"all"}', 400, 'INVALID_INPUT'],
      ['POST', '/db/orders/query', '{"where":{"customer":{"$ne":null}}}', 400, 'INVALID_INPUT'],
      ['POST', '/db/orders/query', '[]', 400, 'INVALID_INPUT'],
      ['PUT', '/db/orders/records/ord-1', '{"record":"x"}', 400, 'INVALID_INPUT'],
      ['PUT', '/db/orders/records/ord-1', '{"record":{"__proto__":{"admin":true}}}', 400, 'INVALID_INPUT'],
      ['PUT', `/db/orders/records/${'x'.repeat(200)}`, '{"record":{}}', 400, 'INVALID_INPUT'],
      [
        'PUT',
        '/db/orders/records/ord-1',
        JSON.stringify({ record: { blob: 'x'.repeat(70_000) } }),
        413,
        'PAYLOAD_TOO_LARGE',
      ],
    ];
    for (const [method, path, body, status, code] of cases) {
      const res = await send(method, path, body);
      expect([method, path.slice(0, 40), res.status, res.body.code]).toEqual([
        method,
        path.slice(0, 40),
        status,
        code,
      ]);
    }
    const badUrl = await get('/db/orders/records/%E0%A4%A', creds(posture, 'clerk'));
    expect([badUrl.status, badUrl.body.code]).toEqual([400, 'INVALID_INPUT']);
    const unknown = await get('/admin/dump', creds(posture, 'admin'));
    expect([unknown.status, unknown.body.code]).toEqual([404, 'ROUTE_NOT_FOUND']);
    const bare = await get('/nothing-here');
    expect(bare.status).toBe(404);
    expect(typeof bare.body.code).toBe('string');
  });
});

describe('sample service, trusted posture: who may connect', () => {
  let orders: string;

  beforeAll(async () => {
    orders = await start('trusted', 'orders');
  });

  it('accepts the gateway and a caller listed in the topology', async () => {
    // payments calls orders; an identity for it is made here.
    ids.payments = await issueServiceCertificate(ca, { name: 'payments' });
    for (const from of ['gateway', 'payments']) {
      const res = await call(orders, '/db/orders/records', {
        headers: creds('trusted', 'clerk'),
        dispatcher: mtls(from, 'orders'),
      });
      expect([from, res.status]).toEqual([from, 200]);
    }
  });

  it('refuses a service that is not one of its callers with 403 PEER_CERTIFICATE_INVALID', async () => {
    const res = await call(orders, '/db/orders/records', {
      headers: creds('trusted', 'admin'),
      dispatcher: mtls('payroll', 'orders'),
    });
    expect([res.status, res.body.code]).toEqual([403, 'PEER_CERTIFICATE_INVALID']);
    const overview = await call(orders, '/overview', { dispatcher: mtls('customers', 'orders') });
    expect([overview.status, overview.body.code]).toEqual([403, 'PEER_CERTIFICATE_INVALID']);
  });

  it('lets a caller make only the requests its edge allows, whatever the ticket (403 PEER_CALL_NOT_ALLOWED)', async () => {
    ids.payments ??= await issueServiceCertificate(ca, { name: 'payments' });
    const asPayments = mtls('payments', 'orders');
    const admin = creds('trusted', 'admin');
    const write = await call(orders, '/db/orders/records/relayed', {
      method: 'PUT',
      body: JSON.stringify({ record: { owner: 'attacker' } }),
      headers: admin,
      dispatcher: asPayments,
    });
    expect([write.status, write.body.code]).toEqual([403, 'PEER_CALL_NOT_ALLOWED']);
    for (const [method, path, body] of [
      ['GET', '/db/orders/records/ord-1', undefined],
      ['POST', '/db/orders/query', JSON.stringify({ where: {} })],
      ['GET', '/overview', undefined],
    ] as const) {
      const res = await call(orders, path, {
        method,
        headers: admin,
        dispatcher: asPayments,
        ...(body === undefined ? {} : { body }),
      });
      expect([path, res.status, res.body.code]).toEqual([path, 403, 'PEER_CALL_NOT_ALLOWED']);
    }
    // the edge's read still works, and the gateway is not bound by the edge: the write did not land
    const read = await call(orders, '/db/orders/records', { headers: admin, dispatcher: asPayments });
    expect(read.status).toBe(200);
    const asGateway = mtls('gateway', 'orders');
    const back = await call(orders, '/db/orders/records/relayed', { headers: admin, dispatcher: asGateway });
    expect([back.status, back.body.code]).toEqual([404, 'RECORD_NOT_FOUND']);
  });

  it("takes its callers' edges from its definition: each caller gets its own rules, one without any gets nothing", async () => {
    ids.payments ??= await issueServiceCertificate(ca, { name: 'payments' });
    ids.invoices ??= await issueServiceCertificate(ca, { name: 'invoices' });
    const own = await start('trusted', 'orders', {}, { payments: ['PUT /db/:db/records/allowed'] });
    const admin = creds('trusted', 'admin');
    const asPayments = mtls('payments', 'orders');
    const body = JSON.stringify({ record: { owner: 'payments' } });
    const put = await call(own, '/db/orders/records/allowed', {
      method: 'PUT',
      body,
      headers: admin,
      dispatcher: asPayments,
    });
    expect(put.status).toBe(200);
    const read = await call(own, '/db/orders/records', { headers: admin, dispatcher: asPayments });
    expect([read.status, read.body.code]).toEqual([403, 'PEER_CALL_NOT_ALLOWED']);
    const other = await call(own, '/db/orders/records', {
      headers: admin,
      dispatcher: mtls('invoices', 'orders'),
    });
    expect([other.status, other.body.code]).toEqual([403, 'PEER_CALL_NOT_ALLOWED']);
  });

  it('refuses a client without a certificate during the handshake', async () => {
    const agent = new Agent({
      connect: { ca: ca.certPem, timeout: 2000, checkServerIdentity: () => undefined },
    });
    agents.push(agent);
    await expect(call(orders, '/healthz', { dispatcher: agent })).rejects.toThrow();
    await expect(
      call(orders, '/db/orders/records', { headers: creds('trusted', 'admin'), dispatcher: agent }),
    ).rejects.toThrow();
  });

  it('refuses plaintext HTTP', async () => {
    await expect(call(orders.replace('https:', 'http:'), '/healthz')).rejects.toThrow();
  });
});
