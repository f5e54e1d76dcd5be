import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { describe, expect, it } from 'vitest';
import { jwkThumbprint } from '../../../src/crypto/thumbprint.js';
import { CONNECTION_LIMITS } from '../../../src/defences/limits.js';
import { MutualTls } from '../../../src/defences/links.js';
import { defencesFor } from '../../../src/defences/presets.js';
import { isTlsFailure } from '../../../src/kernel/tls-failure.js';
import { createLabCa, type LabCa } from '../../../src/pki/ca.js';
import { issueServiceCertificate } from '../../../src/pki/identity.js';
import { clientTlsConnector, serverTlsOptions } from '../../../src/pki/mtls.js';
import type { ServiceKind } from '../../../src/pki/spiffe.js';
import { RevocationFeed } from '../../../src/services/revocation-feed.js';
import { buildSecurityApps } from '../../../src/services/security/app.js';
import { mayCallControlPlane } from '../../../src/services/security/control-plane-policy.js';
import { ServiceRegistry } from '../../../src/services/security/registry.js';
import { RevocationBook } from '../../../src/services/security/revocations.js';
import { SecurityClient } from '../../../src/services/security-client.js';
import { openLabStore } from '../../../src/store/open.js';
import { addUser } from '../../../src/users/users.js';

const LAB = 'ab12cd34';
const TOKEN = 'lab-token-for-tests-0123456789';

describe('the control-plane policy (route by the caller’s SPIFFE kind)', () => {
  it('lets every part read the feeds, only the gateway relay logins, the watchman only check health', () => {
    for (const route of ['GET /v1/keys', 'GET /v1/services', 'GET /v1/revocations']) {
      expect(mayCallControlPlane(route, 'gateway')).toBe(true);
      expect(mayCallControlPlane(route, 'service')).toBe(true);
      expect(mayCallControlPlane(route, 'supervisor')).toBe(false);
      expect(mayCallControlPlane(route, 'security')).toBe(false);
    }
    for (const route of ['POST /v1/auth/challenge', 'POST /v1/auth/verify']) {
      expect(mayCallControlPlane(route, 'gateway')).toBe(true);
      expect(mayCallControlPlane(route, 'service')).toBe(false);
    }
    expect(mayCallControlPlane('GET /healthz', 'supervisor')).toBe(true);
    for (const kind of ['gateway', 'service', 'supervisor'] as ServiceKind[]) {
      expect(mayCallControlPlane('POST /v1/admin/users', kind)).toBe(false);
      expect(mayCallControlPlane('POST /v1/admin/services/:name/quarantine', kind)).toBe(false);
      expect(mayCallControlPlane('POST /v1/services/:name/self-report', kind)).toBe(false);
    }
    // the admin API: the CLI's and the watchman's admin identity only, and nothing else for it
    expect(mayCallControlPlane('POST /v1/admin/users', 'admin')).toBe(true);
    expect(mayCallControlPlane('POST /v1/admin/attestations', 'admin')).toBe(true);
    expect(mayCallControlPlane('POST /v1/admin/services/:name/quarantine', 'admin')).toBe(true);
    expect(mayCallControlPlane('GET /v1/revocations', 'admin')).toBe(false);
    expect(mayCallControlPlane('POST /v1/auth/challenge', 'admin')).toBe(false);
  });
});

async function start() {
  const dir = await mkdtemp(join(tmpdir(), 'tms-cp-'));
  const store = openLabStore(join(dir, 'home'));
  await addUser(store, { name: 'bob', role: 'analyst', password: 'bob-pw' });
  const registry = new ServiceRegistry(store, 'measured');
  await registry.load();
  const revocations = new RevocationBook(store);
  await revocations.load();
  const ca = await createLabCa({ labId: LAB });
  const signing = generateKeyPairSync('ed25519');
  const identity = await issueServiceCertificate(ca, { name: 'security', kind: 'security' });
  const { app, control } = buildSecurityApps(
    {
      labId: LAB,
      defences: defencesFor('trusted'),
      store,
      registry,
      revocations,
      signingKey: { kid: jwkThumbprint(signing.publicKey), privateKey: signing.privateKey },
      sealKey: Buffer.alloc(32, 3),
      labToken: TOKEN,
      ca,
      ticketTtlSeconds: 600,
      challengeTtlSeconds: 30,
    },
    serverTlsOptions(identity, ca.certPem),
  );
  if (!control) throw new Error('no control plane');
  await control.listen({ host: '127.0.0.1', port: 0 });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const portOf = (a: typeof app) => (a.server.address() as { port: number }).port;
  const agents: Agent[] = [];
  const as = async (name: string, kind: ServiceKind, from: LabCa = ca) => {
    const own = await issueServiceCertificate(from, { name, kind });
    const agent = new Agent({ connect: new MutualTls(own, from.certPem).connectControlPlane() });
    agents.push(agent);
    return agent;
  };
  return {
    ca,
    store,
    revocations,
    controlUrl: `https://127.0.0.1:${portOf(control)}`,
    plainUrl: `http://127.0.0.1:${portOf(app)}`,
    as,
    async [Symbol.asyncDispose]() {
      await Promise.all(agents.map((a) => a.destroy()));
      await Promise.all([app.close(), control.close()]);
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function get(url: string, dispatcher: Agent, headers: Record<string, string> = {}) {
  const r = await request(url, { dispatcher, headers });
  return { status: r.statusCode, body: (await r.body.json()) as { code?: string } };
}

describe('the control-plane listener (links:mtls)', () => {
  it('serves the feeds to a part by its certificate, and no admin route to anyone', async () => {
    await using env = await start();
    const orders = await env.as('orders', 'service');
    expect((await get(`${env.controlUrl}/v1/keys`, orders)).status).toBe(200);
    expect((await get(`${env.controlUrl}/v1/services`, orders)).status).toBe(200);
    // a service relays no login
    const relay = await request(`${env.controlUrl}/v1/auth/challenge`, {
      dispatcher: orders,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    expect(relay.statusCode).toBe(403);
    expect(((await relay.body.json()) as { code: string }).code).toBe('PEER_CERTIFICATE_INVALID');
    // admin routes are not there, not even with the lab token
    const gateway = await env.as('gateway', 'gateway');
    const admin = await request(`${env.controlUrl}/v1/admin/users`, {
      dispatcher: gateway,
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({ name: 'mallory', role: 'admin', password: 'pw' }),
    });
    expect(admin.statusCode).toBe(404);
    await admin.body.dump();
    // the watchman checks health only
    const watchman = await env.as('supervisor', 'supervisor');
    expect((await get(`${env.controlUrl}/healthz`, watchman)).status).toBe(200);
    expect((await get(`${env.controlUrl}/v1/keys`, watchman)).status).toBe(403);
  });

  it('takes the login steps only from the gateway on the control plane, never on the plain port (accounts.login-bypass)', async () => {
    await using env = await start();
    const post = async (
      url: string,
      body: object,
      dispatcher?: Agent,
      headers: Record<string, string> = {},
    ) => {
      const r = await request(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify(body),
        ...(dispatcher ? { dispatcher } : {}),
      });
      return { status: r.statusCode, code: ((await r.body.json()) as { code?: string }).code };
    };
    const guess = { user: 'bob', password: 'not-bob-pw', clientKey: 'A'.repeat(43) };
    // Past the gateway: refused before the password is checked, with the lab token and a client
    // address claimed too, and the second step as well.
    const asRelay: Record<string, string> = {
      authorization: `Bearer ${TOKEN}`,
      'x-tms-client-address': '127.0.0.9',
    };
    for (const headers of [{}, asRelay]) {
      expect(await post(`${env.plainUrl}/v1/auth/challenge`, guess, undefined, headers)).toEqual({
        status: 403,
        code: 'LOGIN_VIA_GATEWAY_ONLY',
      });
      expect(
        await post(`${env.plainUrl}/v1/auth/verify`, { id: 'x', signature: 'y' }, undefined, headers),
      ).toEqual({
        status: 403,
        code: 'LOGIN_VIA_GATEWAY_ONLY',
      });
    }
    // The gateway's relay reaches the password check.
    const gateway = await env.as('gateway', 'gateway');
    expect(await post(`${env.controlUrl}/v1/auth/challenge`, guess, gateway)).toEqual({
      status: 401,
      code: 'AUTH_FAILED',
    });
    expect(
      await post(`${env.controlUrl}/v1/auth/verify`, { id: 'x', signature: 'y' }, gateway),
    ).toMatchObject({
      status: 401,
    });
    // The refusals are in the audit log.
    const audit = await readFile(join(env.store.home, 'audit.jsonl'), 'utf8');
    expect(audit.match(/"code":"LOGIN_VIA_GATEWAY_ONLY"/g)?.length).toBe(4);
  });

  it.runIf(process.platform === 'linux')(
    "holds an address to its share of the listener's sockets before any handshake (limits:on)",
    async () => {
      // The red team held ~4,096 silent sockets on it from one address, with no certificate: a
      // gateway restarted meanwhile never came back, and the parts' feeds went stale.
      await using env = await start();
      const port = Number(new URL(env.controlUrl).port);
      const held: Socket[] = [];
      try {
        const open = () =>
          new Promise<Socket>((resolve, reject) => {
            const s = connect({ host: '127.0.0.1', port, localAddress: '127.0.0.3' });
            held.push(s);
            s.once('connect', () => resolve(s));
            s.once('error', reject);
          });
        for (let i = 0; i < CONNECTION_LIMITS.perSource; i++) await open();
        const over = await open();
        const closed = await new Promise<boolean>((resolve) => {
          const t = setTimeout(() => resolve(false), 2000);
          over.once('close', () => {
            clearTimeout(t);
            resolve(true);
          });
        });
        expect(closed, 'one socket past the share is closed at accept').toBe(true);
        // a part from another address is served all the while
        const gateway = await env.as('gateway', 'gateway');
        expect((await get(`${env.controlUrl}/v1/keys`, gateway)).status).toBe(200);
      } finally {
        for (const s of held) s.destroy();
      }
    },
    30_000,
  );

  it('refuses a client without a lab-CA certificate in the handshake', async () => {
    await using env = await start();
    const other = await createLabCa({ labId: LAB });
    const stranger = new Agent({
      connect: clientTlsConnector(
        await issueServiceCertificate(other, { name: 'gateway', kind: 'gateway' }),
        env.ca.certPem,
        'security',
        'security',
      ),
    });
    await expect(request(`${env.controlUrl}/v1/keys`, { dispatcher: stranger })).rejects.toThrow();
    await stranger.destroy();
  });

  it('counts a confirmation only from the certificate of the part it names; the plain port never', async () => {
    await using env = await start();
    const gateway = await env.as('gateway', 'gateway');
    const orders = await env.as('orders', 'service');
    const version = env.revocations.list().version;
    const epoch = version.split('.')[0];
    const held = request(
      `${env.controlUrl}/v1/revocations?since=${encodeURIComponent(version)}&part=gateway`,
      {
        dispatcher: gateway,
      },
    );
    while (env.revocations.listening === 0) await new Promise((r) => setTimeout(r, 10));
    // forged: on the plain port (no certificate) and with another part's certificate
    await (await request(`${env.plainUrl}/v1/revocations?since=${epoch}.999999&part=gateway`)).body.dump();
    await (
      await request(`${env.controlUrl}/v1/revocations?since=${epoch}.999999&part=gateway`, {
        dispatcher: orders,
      })
    ).body.dump();
    const revoke = await request(`${env.plainUrl}/v1/admin/users/bob/revoke`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    const r = (await revoke.body.json()) as { propagation: { parts: number; confirmed: number } };
    await (await held).body.dump();
    expect(r.propagation).toMatchObject({ parts: 1, confirmed: 0 });
  });

  it('counts a confirmation as the gateway only from a gateway-kind certificate (red team item 5)', async () => {
    await using env = await start();
    // a lab-CA certificate of the service kind whose name is gateway (the red team had one issued),
    // following the feed as the gateway does
    const lookalike = await env.as('gateway', 'service');
    const feed = new RevocationFeed(env.controlUrl, { part: 'gateway', dispatcher: lookalike });
    await feed.start();
    try {
      while (env.revocations.listening === 0) await new Promise((r) => setTimeout(r, 10));
      const revoke = await request(`${env.plainUrl}/v1/admin/users/bob/revoke`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      const r = (await revoke.body.json()) as { propagation: { parts: number; confirmed: number } };
      // not counted, nor awaited as the gateway: it was never taken for it
      expect(r.propagation).toMatchObject({ parts: 0, confirmed: 0 });
    } finally {
      await feed.stop();
    }
  });

  it('registers no service, and issues no service identity, under the name of another part', async () => {
    await using env = await start();
    const admin = (path: string, body?: unknown) =>
      request(`${env.plainUrl}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify(body ?? {}),
      });
    for (const name of ['gateway', 'security', 'supervisor', 'sink']) {
      const register = await admin('/v1/admin/services/register', { services: [{ name, hash: 'sha256:x' }] });
      expect(register.statusCode).toBe(400);
      expect(((await register.body.json()) as { code: string }).code).toBe('INVALID_NAME');
      const identity = await admin(`/v1/admin/services/${name}/identity`);
      expect(identity.statusCode).toBe(400);
      expect(((await identity.body.json()) as { code: string }).code).toBe('INVALID_NAME');
    }
    const ok = await admin('/v1/admin/services/register', {
      services: [{ name: 'orders', hash: 'sha256:x' }],
    });
    expect(ok.statusCode).toBe(200);
    await ok.body.dump();
  });

  it('registers and records no name a certificate or the revocation list cannot carry (second red team: "X" broke the store for good)', async () => {
    await using env = await start();
    const admin = (path: string, body?: unknown) =>
      request(`${env.plainUrl}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify(body ?? {}),
      });
    for (const name of ['X', 'a b', '-x', 'x_y', 'x.', 'é']) {
      for (const [path, key] of [
        ['/v1/admin/services/register', 'services'],
        ['/v1/admin/attestations', 'reports'],
      ] as const) {
        const res = await admin(path, { [key]: [{ name, hash: 'sha256:00' }] });
        expect(res.statusCode, `${path} ${name}`).toBe(400);
        expect(((await res.body.json()) as { code: string }).code).toBe('INVALID_NAME');
      }
    }
    // Nothing was stored, and the lab still revokes: the list parses.
    expect(Object.keys((await env.store.data()).services)).toEqual([]);
    const revoke = await admin('/v1/admin/users/bob/revoke');
    expect(revoke.statusCode, await revoke.body.text()).toBe(200);
  });

  it('a real feed over the control plane confirms', async () => {
    await using env = await start();
    const gateway = await env.as('gateway', 'gateway');
    const feed = new RevocationFeed(env.controlUrl, { part: 'gateway', dispatcher: gateway });
    await feed.start();
    try {
      while (env.revocations.listening === 0) await new Promise((r) => setTimeout(r, 10));
      const revoke = await request(`${env.plainUrl}/v1/admin/users/bob/revoke`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      const r = (await revoke.body.json()) as { propagation: { parts: number; confirmed: number } };
      expect(r.propagation).toMatchObject({ parts: 1, confirmed: 1 });
      expect(feed.view.userRevoked('bob')).toBe(true);
    } finally {
      await feed.stop();
    }
  });
});

describe('a part facing an impostor on the control-plane address', () => {
  it('fails closed with CONTROL_PLANE_UNTRUSTED and sends it nothing', async () => {
    const ca = await createLabCa({ labId: LAB });
    const own = await issueServiceCertificate(ca, { name: 'gateway', kind: 'gateway' });
    const agent = new Agent({ connect: new MutualTls(own, ca.certPem).connectControlPlane() });
    let requests = 0;
    const plain = createServer((_req, res) => {
      requests += 1;
      res.end('{}');
    });
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
    // A lab-CA certificate of another kind named "security" is not the security service either.
    const service = await issueServiceCertificate(ca, { name: 'security', kind: 'service' });
    const https = await import('node:https');
    const lookalike = https.createServer(serverTlsOptions(service, ca.certPem), (_req, res) => {
      requests += 1;
      res.end('{}');
    });
    await new Promise<void>((r) => lookalike.listen(0, '127.0.0.1', r));
    try {
      for (const server of [plain, lookalike]) {
        const url = `https://127.0.0.1:${(server.address() as { port: number }).port}`;
        const client = new SecurityClient(url, undefined, agent);
        const err = await client.ticketVerifier('trusted').catch((e: unknown) => e);
        expect(err).toMatchObject({ code: 'CONTROL_PLANE_UNTRUSTED' });
        expect(isTlsFailure((err as { cause?: unknown }).cause)).toBe(true);
        const feed = new RevocationFeed(url, { part: 'gateway', dispatcher: agent });
        await expect(feed.start(500)).rejects.toMatchObject({ code: 'CONTROL_PLANE_UNTRUSTED' });
      }
      expect(requests).toBe(0);
    } finally {
      await agent.destroy();
      plain.close();
      lookalike.close();
    }
  });
});
