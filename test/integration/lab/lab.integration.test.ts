import { readFile, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authHeaders, callService } from '../../../src/client/call.js';
import { POSTURES, type Posture } from '../../../src/defences/posture.js';
import { jsonRequest } from '../../../src/kernel/http-client.js';
import type { PartState } from '../../../src/kernel/lab-state.js';
import { verifyServices } from '../../../src/lab/attest.js';
import { ProcessRuntime } from '../../../src/lab/runtimes/process.js';
import { labUp } from '../../../src/lab/up.js';
import { createLabCa, loadLabCa } from '../../../src/pki/ca.js';
import { issueServiceCertificate } from '../../../src/pki/identity.js';
import { clientTlsConnector } from '../../../src/pki/mtls.js';
import { createProof, PROOF_HEADER } from '../../../src/protocol/proof.js';
import { decodeTicketUnverified } from '../../../src/protocol/ticket.js';
import { cliJson } from '../../support/cli.js';
import { type RunningLab, startLab } from '../../support/lab.js';

type Body = { code?: string; [k: string]: unknown };

async function raw(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string; dispatcher?: Agent } = {},
) {
  const res = await request(url, {
    method: (init.method ?? 'GET') as 'GET',
    headers: init.headers ?? {},
    ...(init.body === undefined ? {} : { body: init.body }),
    ...(init.dispatcher ? { dispatcher: init.dispatcher } : {}),
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  });
  const text = await res.body.text();
  let body: Body = {};
  try {
    body = JSON.parse(text) as Body;
  } catch {
    body = { text };
  }
  return { status: res.statusCode, body };
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

describe.sequential.each(POSTURES)('the process lab in posture %s', (posture: Posture) => {
  let lab: RunningLab;
  const gw = (): string => lab.state.gatewayUrl;
  const part = (name: string): PartState => lab.state.parts.find((p) => p.name === name) as PartState;

  beforeAll(async () => {
    lab = await startLab(posture, posture === 'trusted' ? 20 : 8);
  }, 120_000);
  afterAll(async () => {
    await lab?.[Symbol.asyncDispose]();
  }, 60_000);

  it('logs a user in with the right key and serves a call through the gateway', async () => {
    const session = await lab.login('alice');
    const r = await callService(session, {
      gatewayUrl: gw(),
      service: 'orders',
      path: '/db/orders/records/ord-1',
    });
    expect(r.status).toBe(200);
    expect(JSON.stringify(r.body)).toContain('ord-1');
    const q = await callService(session, {
      gatewayUrl: gw(),
      service: 'orders',
      path: '/db/orders/query',
      body: JSON.stringify({ where: { customer: 'cust-1' } }),
    });
    expect(q.status).toBe(200);
    expect(JSON.stringify(q.body)).toContain('ord-3');
  });

  it(
    posture === 'none'
      ? 'needs nothing but the password (the baseline)'
      : 'refuses a login with the password but a wrong key',
    async () => {
      if (posture === 'none') {
        const s = await lab.login('alice');
        expect(
          (await callService(s, { gatewayUrl: gw(), service: 'catalog', path: '/db/catalog/records' }))
            .status,
        ).toBe(200);
        await expect(lab.login('alice', { password: 'wrong' })).rejects.toMatchObject({
          code: 'AUTH_FAILED',
        });
        return;
      }
      await expect(lab.login('alice', { keyOf: 'bob' })).rejects.toMatchObject({ code: 'SIGNATURE_INVALID' });
      await expect(lab.login('alice', { password: 'wrong' })).rejects.toMatchObject({ code: 'AUTH_FAILED' });
    },
  );

  it('lets the service itself refuse a database outside the role, also when the gateway is bypassed', async () => {
    const bob = await lab.login('bob');
    const viaGateway = await callService(bob, {
      gatewayUrl: gw(),
      service: 'customers',
      path: '/db/customers/records',
    });
    expect(viaGateway.status).toBe(403);
    expect((viaGateway.body as Body).code).toBe('ACCESS_DENIED');

    const customers = part('customers');
    const path = '/db/customers/records';
    if (posture === 'none') {
      // Bypassing the gateway, bob's own perms still do not include customers.
      const perms = JSON.stringify({ orders: ['read', 'query'] });
      const r = await raw(`${customers.url}${path}`, {
        headers: { 'x-tms-user': 'bob', 'x-tms-role': 'analyst', 'x-tms-perms': perms },
      });
      expect(r.status).toBe(403);
      return;
    }
    const headers = { authorization: `Bearer ${bob.ticket}` };
    if (posture === 'paper') {
      const r = await raw(`${customers.url}${path}`, { headers });
      expect(r.status).toBe(403);
      expect(r.body.code).toBe('ACCESS_DENIED');
      return;
    }
    // trusted: without a certificate the service does not even complete the TLS handshake ...
    await expect(raw(`${customers.url}${path}`, { headers })).rejects.toThrow();
    // ... and with one (the gateway's own), bob's ticket is still refused for customers.
    const ca = await loadLabCa(join(lab.home, 'lab', 'ca'));
    const gatewayId = await issueServiceCertificate(ca, { name: 'gateway', kind: 'gateway' });
    const agent = new Agent({ connect: clientTlsConnector(gatewayId, ca.certPem, 'customers') });
    try {
      const r = await raw(`${customers.url}${path}`, { headers, dispatcher: agent });
      expect(r.status).toBe(403);
      expect(r.body.code).toBe('ACCESS_DENIED');
    } finally {
      await agent.close();
    }
  });

  it(
    posture === 'paper'
      ? 'lets a stolen ticket through (the paper scheme is a bearer ticket)'
      : 'refuses a stolen ticket without the key',
    async () => {
      if (posture === 'none') return;
      const alice = await lab.login('alice');
      const path = '/svc/orders/db/orders/records/ord-1';
      const stolen = { authorization: `Bearer ${alice.ticket}` };
      const noProof = await raw(`${gw()}${path}`, { headers: stolen });
      if (posture === 'paper') {
        expect(noProof.status).toBe(200);
        return;
      }
      expect(noProof.status).toBe(401);
      expect(noProof.body.code).toBe('PROOF_INVALID');
      const jti = decodeTicketUnverified(alice.ticket as string).claims.jti;
      const forged = createProof({ sessionKey: Buffer.alloc(32, 7), method: 'GET', path, jti });
      const wrongKey = await raw(`${gw()}${path}`, { headers: { ...stolen, [PROOF_HEADER]: forged } });
      expect(wrongKey.status).toBe(401);
      expect(wrongKey.body.code).toBe('PROOF_INVALID');
      // The owner's proof works once; the same proof replayed is refused.
      const good = authHeaders(alice, 'GET', path, undefined);
      expect((await raw(`${gw()}${path}`, { headers: good })).status).toBe(200);
      const replay = await raw(`${gw()}${path}`, { headers: good });
      expect(replay.status).toBe(401);
      expect(replay.body.code).toBe('PROOF_REPLAYED');
    },
  );

  it('catches a service whose code changed on disk (service verify), and in trusted stops routing to it', async () => {
    const catalog = part('catalog');
    const file = join(catalog.appDir as string, 'service.mjs');
    const original = await readFile(file);
    const alice = await lab.login('alice');
    const call = () =>
      callService(alice, { gatewayUrl: gw(), service: 'catalog', path: '/db/catalog/records' });
    try {
      await writeFile(file, Buffer.concat([original, Buffer.from('\n// tampered\n')]));
      const { services } = await verifyServices(lab.home, ['catalog']);
      expect(services[0]).toMatchObject({ name: 'catalog', state: 'untrusted' });
      const r = await call();
      if (posture === 'none') expect(r.status).toBe(200);
      else {
        expect(r.status).toBe(503);
        expect((r.body as Body).code).toBe('SERVICE_UNTRUSTED');
      }
    } finally {
      await writeFile(file, original);
    }
    const { services } = await verifyServices(lab.home, ['catalog']);
    expect(services[0]?.state).toBe('trusted');
    expect((await call()).status).toBe(200);
  });

  it.runIf(posture === 'trusted')(
    'refuses service-to-service calls from a peer without a valid certificate',
    async () => {
      const customers = part('customers');
      const labCa = await loadLabCa(join(lab.home, 'lab', 'ca'));
      const alice = await lab.login('alice');
      const headers = { authorization: `Bearer ${alice.ticket}` };
      const url = `${customers.url}/db/customers/records`;
      // A certificate named `orders` (a real caller of customers) but from another CA: refused.
      const otherCa = await createLabCa({ labId: 'elsewhere' });
      const foreign = await issueServiceCertificate(otherCa, { name: 'orders' });
      const foreignAgent = new Agent({ connect: clientTlsConnector(foreign, labCa.certPem, 'customers') });
      // A valid lab certificate for a service that never calls customers: refused by name.
      const stranger = await issueServiceCertificate(labCa, { name: 'catalog' });
      const strangerAgent = new Agent({ connect: clientTlsConnector(stranger, labCa.certPem, 'customers') });
      // The legitimate caller: accepted.
      const orders = await issueServiceCertificate(labCa, { name: 'orders' });
      const ordersAgent = new Agent({ connect: clientTlsConnector(orders, labCa.certPem, 'customers') });
      try {
        await expect(raw(url, { headers, dispatcher: foreignAgent })).rejects.toThrow();
        const byName = await raw(url, { headers, dispatcher: strangerAgent });
        expect(byName.status).toBe(403);
        expect(byName.body.code).toBe('PEER_CERTIFICATE_INVALID');
        expect((await raw(url, { headers, dispatcher: ordersAgent })).status).toBe(200);
      } finally {
        await Promise.all([foreignAgent.close(), strangerAgent.close(), ordersAgent.close()]);
      }
    },
  );

  it.runIf(posture === 'none')('refuses a second lab up in the same home while one runs', async () => {
    await expect(labUp({ home: lab.home, posture: 'trusted', services: 1 })).rejects.toMatchObject({
      code: 'LAB_ALREADY_RUNNING',
    });
    expect((await jsonRequest(`${lab.state.gatewayUrl}/healthz`)) as object).toMatchObject({ ok: true });
  });

  it('answers malformed input with a 4xx and a code, never a 5xx', async () => {
    const security = lab.state.securityUrl;
    const cases: [string, { method?: string; headers?: Record<string, string>; body?: string }][] = [
      [
        `${gw()}/auth/challenge`,
        { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"user":' },
      ],
      [
        `${gw()}/auth/challenge`,
        { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"user":42}' },
      ],
      [
        `${gw()}/auth/verify`,
        {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: '{"id":"x","signature":"%%%"}',
        },
      ],
      [
        `${gw()}/auth/verify`,
        {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: '{"id":"abc","signature":"abc"}',
        },
      ],
      [`${gw()}/nowhere`, {}],
      [`${gw()}/svc/no-such-service/x`, { headers: { authorization: 'Bearer x' } }],
      [`${gw()}/svc/orders/db/orders/records`, { headers: { authorization: 'Bearer not.a.ticket' } }],
      [`${gw()}/svc/orders/db/orders/records`, { headers: { authorization: 'Basic !!!' } }],
      [
        `${security}/v1/admin/users`,
        { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' },
      ],
      [
        `${security}/v1/auth/challenge`,
        { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hello' },
      ],
      [
        `${security}/v1/services/orders/self-report`,
        { method: 'POST', headers: { 'content-type': 'application/json' }, body: '[]' },
      ],
    ];
    for (const [url, init] of cases) {
      const r = await raw(url, init);
      expect(r.status, `${init.method ?? 'GET'} ${url} ${init.body ?? ''}`).toBeGreaterThanOrEqual(400);
      expect(r.status, `${init.method ?? 'GET'} ${url} ${init.body ?? ''}`).toBeLessThan(500);
      expect(typeof r.body.code, url).toBe('string');
    }
    const alice = await lab.login('alice');
    const bad = await callService(alice, {
      gatewayUrl: gw(),
      service: 'orders',
      path: '/db/orders/query',
      body: '{"where": 5}',
    });
    expect(bad.status).toBe(400);
    expect((bad.body as Body).code).toBe('INVALID_INPUT');
  });

  it("prints a part's last log lines (lab logs, through the runtime the lab runs on)", async () => {
    const shown = await cliJson<{ result: { part: string; lines: string[] } }>(lab, [
      'lab',
      'logs',
      'gateway',
      '--lines',
      '3',
    ]);
    expect(shown.exitCode).toBe(0);
    expect(shown.json.result.part).toBe('gateway');
    const onDisk = (await readFile(part('gateway').logFile, 'utf8')).split('\n').filter(Boolean);
    expect(shown.json.result.lines).toEqual(onDisk.slice(-3));
    expect(shown.json.result.lines.length).toBeGreaterThan(0);
    const unknown = await cliJson<{ error: { code: string } }>(lab, ['lab', 'logs', 'nowhere']);
    expect(unknown.exitCode).not.toBe(0);
    expect(unknown.json.error.code).toBe('SERVICE_NOT_FOUND');
  });

  it('is taken down completely: no process and no listening port left', async () => {
    const parts = lab.state.parts;
    await lab[Symbol.asyncDispose]();
    const runtime = new ProcessRuntime();
    for (const p of parts) {
      expect(await runtime.isAlive(p), p.name).toBe(false);
      if (p.port > 0) expect(await portOpen(p.port), `${p.name} port ${p.port}`).toBe(false);
    }
    await expect(jsonRequest(`${lab.state.securityUrl}/healthz`, { timeoutMs: 1000 })).rejects.toMatchObject({
      code: 'SERVICE_UNAVAILABLE',
    });
    lab = undefined as unknown as RunningLab;
  });
});
