import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { FastifyInstance } from 'fastify';
import { type Dispatcher, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { AttestationTable } from '../../../src/defences/attestation-table.js';
import { HTTP_EDGE } from '../../../src/defences/edge.js';
import type { Posture } from '../../../src/defences/posture.js';
import { defencesFor } from '../../../src/defences/presets.js';
import { KeyedConcurrency, RATE_WAIT_HEADER, RateLimiter } from '../../../src/defences/rate-limit.js';
import { TrustedMsError } from '../../../src/errors.js';
import { CLIENT_ADDRESS_HEADER } from '../../../src/kernel/client-address.js';
import { createLabCa } from '../../../src/pki/ca.js';
import { issueServiceCertificate } from '../../../src/pki/identity.js';
import { authorizePeer, clientTlsConnector, serverTlsOptions } from '../../../src/pki/mtls.js';
import { createProof, PROOF_HEADER, ProofVerifier } from '../../../src/protocol/proof.js';
import { deriveSessionKey, newExchangeKeyPair, sealSessionKey } from '../../../src/protocol/session-key.js';
import { issueTicket, type TicketClaims, TicketVerifier } from '../../../src/protocol/ticket.js';
import { buildGateway } from '../../../src/services/gateway/app.js';
import { type GatewayIngredients, gatewayStrategies } from '../../../src/services/gateway/assemble.js';
import { servicePath } from '../../../src/services/gateway/routes/forward.js';
import { createPool, poolUpstream } from '../../../src/services/gateway/upstream.js';

const HOST = '127.0.0.1';
const ISSUER = 'trusted-ms://lab-test/security';
const AUDIENCE = 'trusted-ms://lab-test';
const LAB_TOKEN = randomBytes(32).toString('base64url');
const SIGNING = { kid: 'k1', ...generateKeyPairSync('ed25519') };
const OTHER_SIGNING = { kid: 'k1', ...generateKeyPairSync('ed25519') };
const SEAL_KEY = randomBytes(32);
const ALICE_PASSWORD = 'correct horse battery staple';

interface Echo {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

// ---- a real upstream: echoes what reached it; /status/<n> answers that status ----------------

let upstreamServer: Server;
let upstreamUrl: string;
let deadUrl: string;

beforeAll(async () => {
  upstreamServer = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const status = /^\/status\/(\d{3})/.exec(req.url ?? '')?.[1];
      if (status) {
        res.writeHead(Number(status), { 'content-type': 'text/plain', 'x-upstream-secret': 'no' });
        res.end('teapot');
        return;
      }
      const echo: Echo = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      };
      res.writeHead(200, { 'content-type': 'application/json', 'set-cookie': 'upstream=1' });
      res.end(JSON.stringify(echo));
    });
  });
  await new Promise<void>((r) => upstreamServer.listen(0, HOST, r));
  upstreamUrl = `http://${HOST}:${(upstreamServer.address() as AddressInfo).port}`;
  // A port nobody listens on: bind, note, close.
  const dead = createServer();
  await new Promise<void>((r) => dead.listen(0, HOST, r));
  deadUrl = `http://${HOST}:${(dead.address() as AddressInfo).port}`;
  await new Promise<void>((r) => dead.close(() => r()));
});

afterAll(async () => {
  upstreamServer.closeAllConnections();
  await new Promise<void>((r) => upstreamServer.close(() => r()));
});

// ---- a gateway on a real port ------------------------------------------------------------------

interface Lab {
  url: string;
  app: FastifyInstance;
  logs: string[];
  passwordCalls: { n: number };
  attestation: AttestationTable;
  close(): Promise<void>;
}

/** What a test may give its gateway beyond the defaults: ingredients, and the meters it checks. */
interface Extra extends Partial<GatewayIngredients> {
  rateLimit?: { perUser: RateLimiter; perClient: RateLimiter; perUserMaxWaitMs?: number };
  authFailureLimit?: RateLimiter;
  authInFlight?: KeyedConcurrency;
  authRefusalDelayMs?: number;
}

async function startGateway(posture: Posture, extra: Extra = {}): Promise<Lab> {
  const { rateLimit, authFailureLimit, authInFlight, authRefusalDelayMs, ...ingredients } = extra;
  // A test gateway meters only what the test gives it (limits:on needs its meters).
  const metered = rateLimit !== undefined || authFailureLimit !== undefined || authInFlight !== undefined;
  const defences =
    posture === 'trusted' && !metered ? defencesFor('trusted', ['limits:on']) : defencesFor(posture);
  const unlimited = () => new RateLimiter(1e9, 1e9);
  const meters = metered
    ? {
        perUser: rateLimit?.perUser ?? unlimited(),
        perClient: rateLimit?.perClient ?? unlimited(),
        ...(rateLimit?.perUserMaxWaitMs === undefined
          ? {}
          : { perUserMaxWaitMs: rateLimit.perUserMaxWaitMs }),
        ...(authFailureLimit ? { loginFailures: authFailureLimit } : {}),
        ...(authInFlight ? { loginsInFlight: authInFlight } : {}),
        ...(authRefusalDelayMs === undefined ? {} : { refusalDelayMs: authRefusalDelayMs }),
      }
    : undefined;
  // `.invalid` never resolves (RFC 6761): a Docker service whose stopped container left the engine's DNS
  const pools = [createPool(upstreamUrl), createPool(deadUrl), createPool('http://tms-gone.invalid:8080')];
  const logs: string[] = [];
  const passwordCalls = { n: 0 };
  const attestation = new AttestationTable([
    { name: 'orders', state: 'trusted' },
    { name: 'down', state: 'trusted' },
    { name: 'gone', state: 'trusted' },
    { name: 'billing', state: 'untrusted' },
  ]);
  const upstreams = {
    orders: poolUpstream(pools[0]!),
    billing: poolUpstream(pools[0]!),
    down: poolUpstream(pools[1]!),
    gone: poolUpstream(pools[2]!),
  };
  const app = buildGateway({
    edge: HTTP_EDGE,
    ...gatewayStrategies(defences, {
      attestation,
      verifier: new TicketVerifier({
        keys: new Map([[SIGNING.kid, SIGNING.publicKey]]),
        issuer: ISSUER,
        audience: AUDIENCE,
        posture: posture === 'trusted' ? 'trusted' : 'paper',
      }),
      sealKey: SEAL_KEY,
      proofs: new ProofVerifier(),
      checkPassword: async (user, password) => {
        passwordCalls.n += 1;
        await new Promise((r) => setTimeout(r, 20));
        if (user === 'alice' && password === ALICE_PASSWORD) {
          return { user, role: 'analyst', perms: { orders: ['read', 'query'] } };
        }
        if (user === 'locked') throw new TrustedMsError('ACCOUNT_LOCKED', 'account locked');
        throw new TrustedMsError('AUTH_FAILED', 'authentication failed');
      },
      auth: upstreams.orders,
      ...(meters ? { meters } : {}),
      ...ingredients,
    }),
    upstreams,
    attestation,
    labToken: LAB_TOKEN,
    log: (line) => logs.push(line),
  });
  await app.listen({ host: HOST, port: 0 });
  const url = `http://${HOST}:${(app.server.address() as AddressInfo).port}`;
  return {
    url,
    app,
    logs,
    passwordCalls,
    attestation,
    async close() {
      await app.close();
      await Promise.all(pools.map((p) => p.destroy()));
    },
  };
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json: Record<string, unknown> & Partial<Echo> & { code?: string };
}

async function send(
  base: string,
  path: string,
  opts: { method?: Dispatcher.HttpMethod; headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<Answer> {
  const res = await request(`${base}${path}`, {
    method: opts.method ?? 'GET',
    headers: opts.headers ?? {},
    ...(opts.body === undefined ? {} : { body: opts.body }),
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  });
  const text = await res.body.text();
  let json: Answer['json'] = {};
  try {
    json = JSON.parse(text);
  } catch {
    json = {};
  }
  return { status: res.statusCode, headers: res.headers, text, json };
}

const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

// ---- tickets and sessions ----------------------------------------------------------------------

function claims(posture: 'paper' | 'trusted', over: Partial<TicketClaims> = {}): TicketClaims {
  const iat = Math.floor(Date.now() / 1000) - 5;
  return {
    v: 1,
    iss: ISSUER,
    aud: AUDIENCE,
    sub: 'alice',
    role: 'analyst',
    perms: { orders: ['read', 'query'] },
    iat,
    exp: iat + 600,
    jti: randomBytes(16).toString('base64url'),
    posture,
    ...over,
  };
}

interface Session {
  ticket: string;
  jti: string;
  sessionKey: Buffer;
}

/** A trusted login, as the client and the security service would do it: X25519, HKDF, sealing. */
function trustedSession(sub = 'alice'): Session {
  const client = newExchangeKeyPair();
  const server = newExchangeKeyPair();
  const challengeId = randomBytes(16).toString('base64url');
  const sessionKey = deriveSessionKey(client.privateKey, server.publicKeyRaw, challengeId);
  expect(deriveSessionKey(server.privateKey, client.publicKeyRaw, challengeId).equals(sessionKey)).toBe(true);
  const c = claims('trusted', { sub });
  c.cnf = { jkt: randomBytes(32).toString('base64url'), sk: sealSessionKey(SEAL_KEY, sessionKey, c.jti) };
  return { ticket: issueTicket(SIGNING, c), jti: c.jti, sessionKey };
}

function signedHeaders(
  s: Session,
  method: string,
  path: string,
  body?: string,
  key: Buffer = s.sessionKey,
): Record<string, string> {
  return {
    authorization: `Bearer ${s.ticket}`,
    [PROOF_HEADER]: createProof({ sessionKey: key, method, path, body, jti: s.jti }),
  };
}

// ---- posture none ------------------------------------------------------------------------------

describe('gateway, posture none', () => {
  let lab: Lab;
  beforeAll(async () => {
    lab = await startGateway('none');
  });
  afterAll(async () => lab.close());

  it('answers its health', async () => {
    const r = await send(lab.url, '/healthz');
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ ok: true, part: 'gateway', defences: defencesFor('none') });
  });

  it('forwards with the password check, caching a good credential', async () => {
    const before = lab.passwordCalls.n;
    const auth = basic('alice', ALICE_PASSWORD);
    const headers = { authorization: auth, 'x-tms-user': 'admin', 'x-tms-role': 'admin' };
    const a = await send(lab.url, '/svc/orders/db/orders/records?limit=2', { headers });
    const b = await send(lab.url, '/svc/orders/db/orders/records?limit=2', { headers });
    expect(a.status).toBe(200);
    expect(b.status).toBe(200);
    expect(lab.passwordCalls.n - before).toBe(1);
    expect(a.json.url).toBe('/db/orders/records?limit=2');
    expect(a.json.headers?.['x-tms-user']).toBe('alice');
    expect(a.json.headers?.['x-tms-role']).toBe('analyst');
    expect(JSON.parse(String(a.json.headers?.['x-tms-perms']))).toEqual({ orders: ['read', 'query'] });
    // the basic credential itself is not passed on
    expect(a.json.headers?.authorization).toBeUndefined();
  });

  it('checks a credential once when many requests carry it at the same time', async () => {
    const before = lab.passwordCalls.n;
    // a header form not seen yet (the scheme is case-insensitive), so nothing is cached for it
    const fresh = basic('alice', ALICE_PASSWORD).replace('Basic ', 'basic ');
    const all = await Promise.all(
      Array.from({ length: 10 }, () => send(lab.url, '/svc/orders/x', { headers: { authorization: fresh } })),
    );
    expect(all.map((r) => r.status)).toEqual(Array(10).fill(200));
    expect(lab.passwordCalls.n - before).toBe(1);
  });

  it('refuses a wrong password, every time asking again (failures are not cached)', async () => {
    const before = lab.passwordCalls.n;
    for (let i = 0; i < 2; i++) {
      const r = await send(lab.url, '/svc/orders/x', { headers: { authorization: basic('alice', 'wrong') } });
      expect(r.status).toBe(401);
      expect(r.json.code).toBe('AUTH_FAILED');
      expect(r.headers['www-authenticate']).toBe('Basic realm="trusted-ms"');
    }
    expect(lab.passwordCalls.n - before).toBe(2);
    expect(lab.logs.join('\n')).not.toContain('wrong');
  });

  it('refuses a missing or malformed credential without asking', async () => {
    const before = lab.passwordCalls.n;
    for (const authorization of [
      undefined,
      'Basic',
      'Basic !!!',
      basic('', 'x'),
      basic('alice', ''),
      'Bearer abc',
    ]) {
      const r = await send(lab.url, '/svc/orders/x', { headers: authorization ? { authorization } : {} });
      expect(r.status).toBe(401);
      expect(r.json.code).toBe('AUTH_FAILED');
    }
    expect(lab.passwordCalls.n).toBe(before);
  });

  it('passes a lock-out on as it is', async () => {
    const r = await send(lab.url, '/svc/orders/x', { headers: { authorization: basic('locked', 'x') } });
    expect(r.status).toBe(423);
    expect(r.json.code).toBe('ACCOUNT_LOCKED');
  });

  it('does not check attestation', async () => {
    const r = await send(lab.url, '/svc/billing/x', {
      headers: { authorization: basic('alice', ALICE_PASSWORD) },
    });
    expect(r.status).toBe(200);
  });

  it('re-checks a cached credential in the background near its expiry, and drops it once refused', async () => {
    let clock = 1_000_000;
    let valid = true;
    let calls = 0;
    const g = await startGateway('none', {
      now: () => clock,
      basicCacheMs: 60_000,
      checkPassword: async (user) => {
        calls += 1;
        if (!valid) throw new TrustedMsError('AUTH_FAILED', 'authentication failed');
        return { user, role: 'analyst', perms: { orders: ['read'] } };
      },
    });
    try {
      const headers = { authorization: basic('alice', ALICE_PASSWORD) };
      expect((await send(g.url, '/svc/orders/x', { headers })).status).toBe(200);
      clock += 30_000;
      expect((await send(g.url, '/svc/orders/x', { headers })).status).toBe(200);
      expect(calls).toBe(1);
      // in the entry's last third, with the password changed meanwhile: still served from the
      // cache (no wait for a hash), while a re-check runs and is refused
      clock += 25_000;
      valid = false;
      expect((await send(g.url, '/svc/orders/x', { headers })).status).toBe(200);
      await vi.waitFor(async () =>
        expect((await send(g.url, '/svc/orders/x', { headers })).status).toBe(401),
      );
      expect(calls).toBeGreaterThanOrEqual(2);
    } finally {
      await g.close();
    }
  });
});

// ---- posture paper -----------------------------------------------------------------------------

describe('gateway, posture paper', () => {
  let lab: Lab;
  beforeAll(async () => {
    lab = await startGateway('paper');
  });
  afterAll(async () => lab.close());

  it('forwards a bearer ticket as is (principal propagation)', async () => {
    const ticket = issueTicket(SIGNING, claims('paper'));
    const r = await send(lab.url, '/svc/orders/db/orders/records', {
      headers: { authorization: `Bearer ${ticket}` },
    });
    expect(r.status).toBe(200);
    expect(r.json.headers?.authorization).toBe(`Bearer ${ticket}`);
    expect(r.json.headers?.['x-tms-user']).toBeUndefined();
  });

  it('accepts a copied ticket from anyone: the paper posture is a bearer scheme', async () => {
    const ticket = issueTicket(SIGNING, claims('paper'));
    const victim = await send(lab.url, '/svc/orders/a', { headers: { authorization: `Bearer ${ticket}` } });
    const thief = await send(lab.url, '/svc/orders/a', { headers: { authorization: `Bearer ${ticket}` } });
    expect([victim.status, thief.status]).toEqual([200, 200]);
  });

  it('refuses a missing, forged, expired or wrong-posture ticket', async () => {
    const good = issueTicket(SIGNING, claims('paper'));
    const [h, , s] = good.split('.');
    const adminPayload = Buffer.from(JSON.stringify({ ...claims('paper'), role: 'admin' })).toString(
      'base64url',
    );
    const cases: [Record<string, string>, string][] = [
      [{}, 'TICKET_MISSING'],
      [{ authorization: 'Bearer ' }, 'TICKET_MISSING'],
      [{ authorization: basic('alice', ALICE_PASSWORD) }, 'TICKET_MISSING'],
      [{ authorization: `Bearer ${h}.${adminPayload}.${s}` }, 'TICKET_INVALID'],
      [{ authorization: `Bearer ${issueTicket(OTHER_SIGNING, claims('paper'))}` }, 'TICKET_INVALID'],
      [{ authorization: 'Bearer not.a.ticket' }, 'TICKET_INVALID'],
      [{ authorization: `Bearer ${'x'.repeat(9000)}` }, 'TICKET_INVALID'],
      [{ authorization: `Bearer ${trustedSession().ticket}` }, 'TICKET_INVALID'],
      [
        {
          authorization: `Bearer ${issueTicket(SIGNING, claims('paper', { iat: Math.floor(Date.now() / 1000) - 600, exp: Math.floor(Date.now() / 1000) - 60 }))}`,
        },
        'TICKET_EXPIRED',
      ],
    ];
    for (const [headers, code] of cases) {
      const r = await send(lab.url, '/svc/orders/x', { headers });
      expect({ status: r.status, code: r.json.code }).toEqual({ status: 401, code });
    }
  });

  it('refuses a service whose attestation is not trusted', async () => {
    const ticket = issueTicket(SIGNING, claims('paper'));
    const r = await send(lab.url, '/svc/billing/x', { headers: { authorization: `Bearer ${ticket}` } });
    expect(r.status).toBe(503);
    expect(r.json.code).toBe('SERVICE_UNTRUSTED');
    expect(lab.logs.some((l) => l.includes('SERVICE_UNTRUSTED') && l.includes('"billing"'))).toBe(true);
    expect(lab.logs.join('\n')).not.toContain(ticket);
  });

  it('asks the security service again before refusing, and routes a service attested since', async () => {
    let asked = 0;
    let attestedSince = false;
    const own: Lab = await startGateway('paper', {
      recheckAttestation: async () => {
        asked += 1;
        if (attestedSince) own.attestation.replace([{ name: 'billing', state: 'trusted' }]);
      },
    });
    try {
      const headers = { authorization: `Bearer ${issueTicket(SIGNING, claims('paper'))}` };
      const refused = await send(own.url, '/svc/billing/x', { headers });
      expect({ status: refused.status, code: refused.json.code, asked }).toEqual({
        status: 503,
        code: 'SERVICE_UNTRUSTED',
        asked: 1,
      });
      attestedSince = true;
      const routed = await send(own.url, '/svc/billing/x', { headers });
      expect({ status: routed.status, asked }).toEqual({ status: 200, asked: 2 });
      // A trusted service is routed without asking.
      await send(own.url, '/svc/billing/x', { headers });
      expect(asked).toBe(2);
    } finally {
      await own.close();
    }
  });
});

// ---- posture trusted ---------------------------------------------------------------------------

describe('gateway, posture trusted', () => {
  let lab: Lab;
  beforeAll(async () => {
    lab = await startGateway('trusted');
  });
  afterAll(async () => lab.close());

  it('forwards a request with a valid proof, passing the ticket on but not the proof', async () => {
    const s = trustedSession();
    const path = '/svc/orders/db/orders/records?x=1';
    const body = '{"item":"book","qty":1}';
    const r = await send(lab.url, path, {
      method: 'POST',
      headers: { ...signedHeaders(s, 'POST', path, body), 'content-type': 'application/json' },
      body,
    });
    expect(r.status).toBe(200);
    expect(r.json.method).toBe('POST');
    expect(r.json.url).toBe('/db/orders/records?x=1');
    expect(r.json.body).toBe(body);
    expect(r.json.headers?.authorization).toBe(`Bearer ${s.ticket}`);
    expect(r.json.headers?.[PROOF_HEADER]).toBeUndefined();
  });

  it('accepts many requests under one ticket, each with its own proof', async () => {
    const s = trustedSession();
    for (let i = 0; i < 3; i++) {
      const r = await send(lab.url, `/svc/orders/r/${i}`, {
        headers: signedHeaders(s, 'GET', `/svc/orders/r/${i}`),
      });
      expect(r.status).toBe(200);
    }
  });

  it('refuses a ticket without a proof', async () => {
    const s = trustedSession();
    const r = await send(lab.url, '/svc/orders/x', { headers: { authorization: `Bearer ${s.ticket}` } });
    expect({ status: r.status, code: r.json.code }).toEqual({ status: 401, code: 'PROOF_INVALID' });
  });

  it('refuses a proof made for another path, body or method', async () => {
    const s = trustedSession();
    const path = '/svc/orders/db/orders/records';
    const attempts: [string, Dispatcher.HttpMethod, Record<string, string>, string | undefined][] = [
      [`${path}?all=1`, 'POST', signedHeaders(s, 'POST', path, 'a'), 'a'],
      [path, 'POST', signedHeaders(s, 'POST', path, 'a'), 'b'],
      [path, 'PUT', signedHeaders(s, 'POST', path, 'a'), 'a'],
      ['/svc/billing/db/orders/records', 'POST', signedHeaders(s, 'POST', path, 'a'), 'a'],
      [path, 'GET', { ...signedHeaders(s, 'GET', path), [PROOF_HEADER]: 'v1.1.x.y' }, undefined],
    ];
    for (const [p, method, headers, body] of attempts) {
      const r = await send(lab.url, p, { method, headers, ...(body === undefined ? {} : { body }) });
      expect({ status: r.status, code: r.json.code }).toEqual({ status: 401, code: 'PROOF_INVALID' });
    }
  });

  it('refuses a replayed request', async () => {
    const s = trustedSession();
    const headers = signedHeaders(s, 'GET', '/svc/orders/x');
    expect((await send(lab.url, '/svc/orders/x', { headers })).status).toBe(200);
    const again = await send(lab.url, '/svc/orders/x', { headers });
    expect({ status: again.status, code: again.json.code }).toEqual({ status: 401, code: 'PROOF_REPLAYED' });
  });

  it('refuses a stolen ticket whose proof is made under another session key', async () => {
    const s = trustedSession();
    const headers = signedHeaders(s, 'GET', '/svc/orders/x', undefined, randomBytes(32));
    const r = await send(lab.url, '/svc/orders/x', { headers });
    expect({ status: r.status, code: r.json.code }).toEqual({ status: 401, code: 'PROOF_INVALID' });
    expect(
      lab.logs.some((l) => l.includes('PROOF_INVALID') && l.includes('"alice"') && l.includes('bad-mac')),
    ).toBe(true);
    expect(lab.logs.join('\n')).not.toContain(s.ticket);
  });

  it('refuses a paper (bearer) ticket', async () => {
    const ticket = issueTicket(SIGNING, claims('paper'));
    const r = await send(lab.url, '/svc/orders/x', { headers: { authorization: `Bearer ${ticket}` } });
    expect({ status: r.status, code: r.json.code }).toEqual({ status: 401, code: 'TICKET_INVALID' });
  });

  it('refuses a ticket whose sealed key was sealed for another ticket', async () => {
    const s = trustedSession();
    const c = claims('trusted');
    c.cnf = { jkt: randomBytes(32).toString('base64url'), sk: sealSessionKey(SEAL_KEY, s.sessionKey, s.jti) };
    const moved = { ticket: issueTicket(SIGNING, c), jti: c.jti, sessionKey: s.sessionKey };
    const r = await send(lab.url, '/svc/orders/x', { headers: signedHeaders(moved, 'GET', '/svc/orders/x') });
    expect({ status: r.status, code: r.json.code }).toEqual({ status: 401, code: 'TICKET_INVALID' });
  });

  it('refuses an untrusted service, and routes again once the security service pushes trusted', async () => {
    const s = trustedSession();
    const path = '/svc/billing/x';
    const refused = await send(lab.url, path, { headers: signedHeaders(s, 'GET', path) });
    expect({ status: refused.status, code: refused.json.code }).toEqual({
      status: 503,
      code: 'SERVICE_UNTRUSTED',
    });

    const push = (authorization: string, services: unknown) =>
      send(lab.url, '/internal/attestations', {
        method: 'POST',
        headers: { authorization, 'content-type': 'application/json' },
        body: JSON.stringify({ services }),
      });
    const all = ['orders', 'down', 'billing'].map((name) => ({ name, state: 'trusted' }));
    for (const bad of ['Bearer nope', `Bearer ${LAB_TOKEN}x`, '', `Basic ${LAB_TOKEN}`]) {
      const r = await push(bad, all);
      expect({ status: r.status, code: r.json.code }).toEqual({ status: 401, code: 'ADMIN_TOKEN_INVALID' });
    }
    expect(lab.attestation.state('billing')).toBe('untrusted');
    const malformed = await push(`Bearer ${LAB_TOKEN}`, [{ name: 'billing', state: 'fine' }]);
    expect({ status: malformed.status, code: malformed.json.code }).toEqual({
      status: 400,
      code: 'INVALID_INPUT',
    });

    const ok = await push(`Bearer ${LAB_TOKEN}`, all);
    expect(ok.status).toBe(200);
    const routed = await send(lab.url, path, { headers: signedHeaders(s, 'GET', path) });
    expect(routed.status).toBe(200);

    // and a tampered service is refused at once
    await push(`Bearer ${LAB_TOKEN}`, [{ name: 'orders', state: 'untrusted' }]);
    const tampered = await send(lab.url, '/svc/orders/x', {
      headers: signedHeaders(s, 'GET', '/svc/orders/x'),
    });
    expect(tampered.json.code).toBe('SERVICE_UNTRUSTED');
    await push(`Bearer ${LAB_TOKEN}`, all);
  });

  it('rate-limits per user', async () => {
    let t = 1_000_000;
    const limited = await startGateway('trusted', {
      rateLimit: { perUser: new RateLimiter(1, 2, () => t), perClient: new RateLimiter(1000, 1000, () => t) },
    });
    try {
      const s = trustedSession();
      const statuses: (number | string | undefined)[] = [];
      for (let i = 0; i < 3; i++) {
        const r = await send(limited.url, '/svc/orders/x', {
          headers: signedHeaders(s, 'GET', '/svc/orders/x'),
        });
        statuses.push(r.status === 200 ? 200 : r.json.code);
      }
      expect(statuses).toEqual([200, 200, 'RATE_LIMITED']);
      // another user is not affected
      const bob = trustedSession('bob');
      expect(
        (await send(limited.url, '/svc/orders/x', { headers: signedHeaders(bob, 'GET', '/svc/orders/x') }))
          .status,
      ).toBe(200);
      t += 1000;
      expect(
        (await send(limited.url, '/svc/orders/x', { headers: signedHeaders(s, 'GET', '/svc/orders/x') }))
          .status,
      ).toBe(200);
    } finally {
      await limited.close();
    }
  });

  it('makes a user over its rate wait its turn, and says so on the answer (the DoS judge counts it)', async () => {
    const t = 1_000_000;
    const limited = await startGateway('trusted', {
      rateLimit: {
        perUser: new RateLimiter(50, 1, () => t),
        perClient: new RateLimiter(1000, 1000, () => t),
        perUserMaxWaitMs: 1000,
      },
    });
    try {
      const s = trustedSession();
      const first = await send(limited.url, '/svc/orders/x', {
        headers: signedHeaders(s, 'GET', '/svc/orders/x'),
      });
      const second = await send(limited.url, '/svc/orders/x', {
        headers: signedHeaders(s, 'GET', '/svc/orders/x'),
      });
      expect([first.status, second.status]).toEqual([200, 200]);
      expect(first.headers[RATE_WAIT_HEADER]).toBeUndefined();
      // the bucket's clock is frozen: the second token is due 1/50 s later
      expect(second.headers[RATE_WAIT_HEADER]).toBe('20');
    } finally {
      await limited.close();
    }
  });

  it('rate-limits per client address, before any ticket work', async () => {
    const limited = await startGateway('trusted', {
      rateLimit: { perUser: new RateLimiter(1000, 1000), perClient: new RateLimiter(0.001, 1) },
    });
    try {
      const first = await send(limited.url, '/svc/orders/x', { headers: { authorization: 'Bearer junk' } });
      expect(first.json.code).toBe('TICKET_INVALID');
      const second = await send(limited.url, '/svc/orders/x', { headers: { authorization: 'Bearer junk' } });
      expect({ status: second.status, code: second.json.code }).toEqual({
        status: 429,
        code: 'RATE_LIMITED',
      });
    } finally {
      await limited.close();
    }
  });
});

// ---- the login relay ---------------------------------------------------------------------------

describe('gateway, login relay', () => {
  it("tells the security service the real client's address, vouched for by the lab token", async () => {
    const lab = await startGateway('trusted', { auth: poolUpstream(createPool(upstreamUrl)) });
    try {
      const r = await send(lab.url, '/auth/challenge', {
        method: 'POST',
        headers: { 'content-type': 'application/json', [CLIENT_ADDRESS_HEADER]: '10.9.9.9' },
        body: '{"user":"alice"}',
      });
      const echo = r.json as unknown as Echo;
      expect(echo.url).toBe('/v1/auth/challenge');
      // the client's own claim is not passed on: the gateway writes what its socket saw
      expect(echo.headers[CLIENT_ADDRESS_HEADER]).toBe('127.0.0.1');
      expect(echo.headers.authorization).toBe(`Bearer ${LAB_TOKEN}`);
    } finally {
      await lab.close();
    }
  });

  it('refuses a client whose failed logins are spent, before any relay, and never counts successes', async () => {
    // A real security-service stand-in on a socket: wrong password for everyone but alice.
    let relayed = 0;
    const auth = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        relayed += 1;
        const ok = Buffer.concat(chunks).toString('utf8').includes('"alice"');
        res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' });
        res.end(ok ? '{"id":"c1"}' : '{"code":"AUTH_FAILED","message":"authentication failed"}');
      });
    });
    await new Promise<void>((r) => auth.listen(0, HOST, r));
    const lab = await startGateway('trusted', {
      auth: poolUpstream(createPool(`http://${HOST}:${(auth.address() as AddressInfo).port}`)),
      authFailureLimit: new RateLimiter(0.001, 2),
      authInFlight: new KeyedConcurrency(1, 8),
      authRefusalDelayMs: 0,
    });
    try {
      const login = async (user: string) =>
        (
          await send(lab.url, '/auth/challenge', {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ user }),
          })
        ).status;
      // successes are not counted
      expect([await login('alice'), await login('alice'), await login('alice')]).toEqual([200, 200, 200]);
      // two failures spend the budget; the next attempts are refused without reaching the service
      const attempts = await Promise.all(Array.from({ length: 5 }, () => login('mallory')));
      expect(attempts.filter((s) => s === 401)).toHaveLength(2);
      expect(attempts.filter((s) => s === 429)).toHaveLength(3);
      expect(relayed).toBe(5);
      expect(await login('alice')).toBe(429);
    } finally {
      await lab.close();
      await new Promise<void>((r) => auth.close(() => r()));
    }
  });

  it("says on a login step's answer that it waited for its address's slot (the DoS judge counts it as held back)", async () => {
    // A slow security-service stand-in: each step takes 150 ms, so a second step of the same
    // address waits for the first's slot.
    const auth = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        setTimeout(() => {
          res.writeHead(401, { 'content-type': 'application/json' });
          res.end('{"code":"AUTH_FAILED","message":"authentication failed"}');
        }, 150);
      });
    });
    await new Promise<void>((r) => auth.listen(0, HOST, r));
    const lab = await startGateway('trusted', {
      auth: poolUpstream(createPool(`http://${HOST}:${(auth.address() as AddressInfo).port}`)),
      authFailureLimit: new RateLimiter(0.001, 100),
      authInFlight: new KeyedConcurrency(1, 8),
      authRefusalDelayMs: 0,
    });
    try {
      const step = () =>
        send(lab.url, '/auth/challenge', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ user: 'mallory' }),
        });
      const [first, second] = await Promise.all([step(), step()]);
      expect([first.status, second.status]).toEqual([401, 401]);
      const waits = [first, second].map((r) => r.headers[RATE_WAIT_HEADER]);
      // one of them went first and did not wait; the other waited about the first's 150 ms
      expect(waits.filter((w) => w === undefined)).toHaveLength(1);
      const waited = Number(waits.find((w) => w !== undefined));
      expect(waited).toBeGreaterThanOrEqual(100);
      // alone, a step waits for nothing
      expect((await step()).headers[RATE_WAIT_HEADER]).toBeUndefined();
    } finally {
      await lab.close();
      await new Promise<void>((r) => auth.close(() => r()));
    }
  });
});

// ---- forwarding --------------------------------------------------------------------------------

describe('gateway, forwarding', () => {
  let lab: Lab;
  const auth = { authorization: basic('alice', ALICE_PASSWORD) };
  beforeAll(async () => {
    lab = await startGateway('none');
  });
  afterAll(async () => lab.close());

  it('keeps the query, and passes on only what the service needs', async () => {
    const r = await send(lab.url, '/svc/orders/a/b%20c/?q=1&r=%2F', {
      method: 'DELETE',
      headers: {
        ...auth,
        cookie: 'session=secret',
        [PROOF_HEADER]: 'v1.1.abc.def',
        'x-forwarded-for': '10.0.0.1',
        'proxy-authorization': 'Basic eA==',
        connection: 'keep-alive, x-custom',
        'x-custom': '1',
      },
    });
    expect(r.status).toBe(200);
    expect(r.json.method).toBe('DELETE');
    expect(r.json.url).toBe('/a/b%20c/?q=1&r=%2F');
    const forwarded = Object.keys(r.json.headers ?? {}).sort();
    for (const h of [
      'cookie',
      PROOF_HEADER,
      'x-forwarded-for',
      'proxy-authorization',
      'x-custom',
      'authorization',
    ]) {
      expect(forwarded).not.toContain(h);
    }
    // the upstream's own headers are not relayed either, only its content type
    expect(r.headers['set-cookie']).toBeUndefined();
    expect(r.headers['content-type']).toBe('application/json');
  });

  it('maps /svc/<name> alone and a bare query to the service root', async () => {
    expect((await send(lab.url, '/svc/orders', { headers: auth })).json.url).toBe('/');
    expect((await send(lab.url, '/svc/orders?x=1', { headers: auth })).json.url).toBe('/?x=1');
    expect(servicePath('/svc/orders/')).toBe('/');
  });

  it("relays the upstream's status, content type and body", async () => {
    const r = await send(lab.url, '/svc/orders/status/418', { headers: auth });
    expect(r.status).toBe(418);
    expect(r.headers['content-type']).toBe('text/plain');
    expect(r.headers['x-upstream-secret']).toBeUndefined();
    expect(r.text).toBe('teapot');
  });

  it('answers 503 SERVICE_DOWN at once when nothing listens where the service should be', async () => {
    const r = await send(lab.url, '/svc/down/x', { headers: auth });
    expect({ status: r.status, code: r.json.code }).toEqual({ status: 503, code: 'SERVICE_DOWN' });
    const gone = await send(lab.url, '/svc/gone/x', { headers: auth });
    expect({ status: gone.status, code: gone.json.code }).toEqual({ status: 503, code: 'SERVICE_DOWN' });
    // and keeps working
    expect((await send(lab.url, '/healthz')).status).toBe(200);
  });

  it('forwards bad JSON as bytes, without parsing it', async () => {
    for (const [contentType, body] of [
      ['application/json', '{"not": json'],
      ['application/json; charset=utf-8', '\u00e9\u0000'],
      ['text/plain', 'hello'],
      ['application/x-weird', '<xml/>'],
    ] as const) {
      const r = await send(lab.url, '/svc/orders/x', {
        method: 'POST',
        headers: { ...auth, 'content-type': contentType },
        body,
      });
      expect(r.status).toBe(200);
      expect(r.json.body).toBe(body);
      expect(r.json.headers?.['content-type']).toBe(contentType);
      expect(r.json.headers?.['content-length']).toBe(String(Buffer.byteLength(body)));
    }
  });

  it('forwards a body sent without a content type', async () => {
    const r = await send(lab.url, '/svc/orders/x', { method: 'PUT', headers: auth, body: 'raw' });
    expect(r.status).toBe(200);
    expect(r.json.body).toBe('raw');
  });
});

// ---- malformed input ---------------------------------------------------------------------------

describe('gateway, malformed input', () => {
  let lab: Lab;
  beforeAll(async () => {
    lab = await startGateway('trusted');
  });
  afterAll(async () => lab.close());

  it('refuses a huge body with 413 PAYLOAD_TOO_LARGE', async () => {
    const r = await send(lab.url, '/svc/orders/x', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: Buffer.alloc(200 * 1024, 0x61),
    });
    expect({ status: r.status, code: r.json.code }).toEqual({ status: 413, code: 'PAYLOAD_TOO_LARGE' });
  });

  it('answers ROUTE_NOT_FOUND and SERVICE_NOT_FOUND', async () => {
    const route = await send(lab.url, '/nope');
    expect({ status: route.status, code: route.json.code }).toEqual({ status: 404, code: 'ROUTE_NOT_FOUND' });
    for (const p of ['/svc/ghost/x', '/svc/constructor/x', '/svc/__proto__', '/svc/orders%2Fx/y']) {
      const r = await send(lab.url, p);
      expect({ p, status: r.status, code: r.json.code }).toEqual({
        p,
        status: 404,
        code: 'SERVICE_NOT_FOUND',
      });
    }
    expect((await send(lab.url, '/svc/%2e%2e/x')).status).toBe(404);
  });

  it('never answers a 5xx to bad input', async () => {
    const s = trustedSession();
    const longPath = `/svc/orders/${'a/'.repeat(2000)}`;
    const inputs: Parameters<typeof send>[] = [
      [lab.url, '/svc/orders/x', { headers: { authorization: 'Bearer', [PROOF_HEADER]: '' } }],
      [
        lab.url,
        '/svc/orders/x',
        { headers: { authorization: `Bearer ${s.ticket}`, [PROOF_HEADER]: 'v1.'.repeat(100) } },
      ],
      [
        lab.url,
        '/svc/orders/x',
        {
          headers: {
            authorization: `bearer ${s.ticket}`,
            [PROOF_HEADER]:
              'v1.99999999999999999.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
          },
        },
      ],
      [lab.url, longPath, { headers: signedHeaders(s, 'GET', `${longPath}x`) }],
      [
        lab.url,
        '/svc/orders/x',
        { method: 'POST', headers: { 'content-type': 'multipart/form-data; boundary=x' }, body: '--x' },
      ],
      [
        lab.url,
        '/internal/attestations',
        { method: 'POST', headers: { authorization: `Bearer ${LAB_TOKEN}` }, body: 'not json' },
      ],
      [
        lab.url,
        '/internal/attestations',
        { method: 'POST', headers: { authorization: `Bearer ${LAB_TOKEN}` }, body: 'null' },
      ],
      [
        lab.url,
        '/internal/attestations',
        { method: 'POST', headers: { authorization: `Bearer ${LAB_TOKEN}` } },
      ],
      [lab.url, '/healthz', { method: 'POST', body: '{}' }],
    ];
    for (const [base, path, opts] of inputs) {
      const r = await send(base, path, opts);
      expect({ path: path.slice(0, 40), status: r.status < 500, code: typeof r.json.code }).toEqual({
        path: path.slice(0, 40),
        status: true,
        code: 'string',
      });
    }
    // the long, correctly signed path goes through
    expect((await send(lab.url, longPath, { headers: signedHeaders(s, 'GET', longPath) })).status).toBe(200);
  });
});

// ---- mTLS to the services (trusted) ------------------------------------------------------------

describe('gateway, mutual TLS to a service', () => {
  it("reaches a service over mTLS with the gateway's identity, and refuses an impostor", async () => {
    const ca = await createLabCa({ labId: 'lab-test' });
    const [orders, gatewayId] = await Promise.all([
      issueServiceCertificate(ca, { name: 'orders' }),
      issueServiceCertificate(ca, { name: 'gateway', kind: 'gateway' }),
    ]);
    const seen: string[] = [];
    const server = createHttpsServer(serverTlsOptions(orders, ca.certPem), (req, res) => {
      seen.push(authorizePeer(req.socket as TLSSocket, (_name, kind) => kind === 'gateway'));
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('over mtls');
    });
    await new Promise<void>((r) => server.listen(0, HOST, r));
    const url = `https://${HOST}:${(server.address() as AddressInfo).port}`;
    // the same service reached under another name: its certificate does not name "billing"
    const pools = [
      createPool(url, { connect: clientTlsConnector(gatewayId, ca.certPem, 'orders') }),
      createPool(url, { connect: clientTlsConnector(gatewayId, ca.certPem, 'billing') }),
    ];
    const attestation = new AttestationTable();
    const app = buildGateway({
      edge: HTTP_EDGE,
      ...gatewayStrategies(defencesFor('none'), {
        attestation,
        checkPassword: async (user) => ({ user, role: 'analyst', perms: {} }),
      }),
      upstreams: { orders: poolUpstream(pools[0]!), billing: poolUpstream(pools[1]!) },
      attestation,
      log: () => undefined,
    });
    try {
      const auth = { authorization: basic('alice', 'pw') };
      const ok = await app.inject({ method: 'GET', url: '/svc/orders/x', headers: auth });
      expect(ok.statusCode).toBe(200);
      expect(ok.body).toBe('over mtls');
      expect(seen).toEqual(['gateway']);
      const impostor = await app.inject({ method: 'GET', url: '/svc/billing/x', headers: auth });
      expect(impostor.statusCode).toBe(502);
      expect(impostor.json().code).toBe('SERVICE_UNAVAILABLE');
    } finally {
      await app.close();
      await Promise.all(pools.map((p) => p.destroy()));
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
