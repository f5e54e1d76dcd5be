import type { Server, ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { Agent, request } from 'undici';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isTrustedMsError, TrustedMsError } from '../../../src/errors.js';
import { createLabCa, type LabCa } from '../../../src/pki/ca.js';
import {
  issueServiceCertificate,
  type ServiceIdentity,
  type ServiceKind,
} from '../../../src/pki/identity.js';
import {
  authorizePeer,
  certificateEndClock,
  clientTlsConnector,
  serverTlsOptions,
} from '../../../src/pki/mtls.js';

let ca: LabCa;
let otherCa: LabCa;
let customers: ServiceIdentity;
let orders: ServiceIdentity;

beforeAll(async () => {
  [ca, otherCa] = await Promise.all([createLabCa({ labId: 'lab1' }), createLabCa({ labId: 'lab2' })]);
  [customers, orders] = await Promise.all([
    issueServiceCertificate(ca, { name: 'customers' }),
    issueServiceCertificate(ca, { name: 'orders' }),
  ]);
});

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Seen {
  requests: number;
  peers: string[];
  errors: unknown[];
  /** Connections whose handshake completed (node destroys refused ones before this event). */
  connections: number;
}

type Allow = (peer: string, kind: ServiceKind) => boolean;

/** An https server with `identity` on 127.0.0.1 that answers 200 {peer} or 403 {code}. */
async function startService(
  identity: ServiceIdentity,
  allowed: Allow = () => true,
): Promise<{ url: string; seen: Seen }> {
  const seen: Seen = { requests: 0, peers: [], errors: [], connections: 0 };
  const server = createHttpsServer(serverTlsOptions(identity, ca.certPem), (req, res) => {
    seen.requests += 1;
    try {
      const peer = authorizePeer(req.socket as TLSSocket, allowed);
      seen.peers.push(peer);
      reply(res, 200, { peer });
    } catch (err) {
      seen.errors.push(err);
      reply(res, isTrustedMsError(err) ? err.httpStatus : 500, {
        code: isTrustedMsError(err) ? err.code : 'INTERNAL',
      });
    }
  });
  server.on('secureConnection', () => {
    seen.connections += 1;
  });
  const url = await listen(server);
  return { url, seen };
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  cleanups.push(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const { port } = server.address() as AddressInfo;
  return `${'encrypted' in server || 'setSecureContext' in server ? 'https' : 'http'}://127.0.0.1:${port}`;
}

function agentFor(identity: ServiceIdentity, expectedPeer: string, caPem = ca.certPem): Agent {
  const agent = new Agent({ connect: clientTlsConnector(identity, caPem, expectedPeer) });
  cleanups.push(() => agent.destroy());
  return agent;
}

async function get(url: string, dispatcher: Agent): Promise<{ status: number; body: unknown }> {
  const res = await request(`${url}/hello`, { dispatcher });
  return { status: res.statusCode, body: await res.body.json() };
}

describe('mutual TLS between lab services', () => {
  it('(a) orders -> customers with valid certificates: 200, and the server sees peer "orders"', async () => {
    const svc = await startService(customers);
    const res = await get(svc.url, agentFor(orders, 'customers'));
    expect(res).toEqual({ status: 200, body: { peer: 'orders' } });
    expect(svc.seen.peers).toEqual(['orders']);
  });

  it('(b) refuses at the handshake a client certificate from another lab CA', async () => {
    const svc = await startService(customers);
    const rogue = await issueServiceCertificate(otherCa, { name: 'orders' });
    // The rogue trusts the real CA (it is public) and skips every check of the server.
    const agent = new Agent({
      connect: {
        ca: ca.certPem,
        cert: rogue.certPem,
        key: rogue.keyPem,
        checkServerIdentity: () => undefined,
      },
    });
    cleanups.push(() => agent.destroy());
    await expect(get(svc.url, agent)).rejects.toThrow();
    expect(svc.seen.connections).toBe(0);
    expect(svc.seen.requests).toBe(0);
  });

  it('(c) refuses at the handshake a client without a certificate', async () => {
    const svc = await startService(customers);
    const agent = new Agent({ connect: { ca: ca.certPem, checkServerIdentity: () => undefined } });
    cleanups.push(() => agent.destroy());
    await expect(get(svc.url, agent)).rejects.toThrow();
    expect(svc.seen.connections).toBe(0);
    expect(svc.seen.requests).toBe(0);
  });

  it('(d) refuses a server whose certificate names another service (a rogue "payments" answering for "customers")', async () => {
    const payments = await issueServiceCertificate(ca, { name: 'payments' });
    const rogue = await startService(payments);
    const err = await get(rogue.url, agentFor(orders, 'customers')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TrustedMsError);
    expect((err as TrustedMsError).code).toBe('PEER_CERTIFICATE_INVALID');
    expect(rogue.seen.requests).toBe(0);
    // The same client reaches the real one.
    const real = await startService(customers);
    expect((await get(real.url, agentFor(orders, 'customers'))).status).toBe(200);
  });

  it('(d) also refuses a server certificate from another lab, even for the right name', async () => {
    const rogueIdentity = await issueServiceCertificate(otherCa, { name: 'customers' });
    const server = createHttpsServer(serverTlsOptions(rogueIdentity, otherCa.certPem), (_req, res) => {
      res.end('stolen');
    });
    const url = await listen(server);
    await expect(get(url, agentFor(orders, 'customers'))).rejects.toThrow();
  });

  it('(e) refuses an expired client certificate and an expired server certificate', async () => {
    const past = () => new Date(Date.now() - 3600_000);
    const expiredOrders = await issueServiceCertificate(ca, { name: 'orders', ttlSeconds: 60, now: past });
    expect(expiredOrders.notAfter.getTime()).toBeLessThan(Date.now());
    const svc = await startService(customers);
    await expect(get(svc.url, agentFor(expiredOrders, 'customers'))).rejects.toThrow();
    expect(svc.seen.connections).toBe(0);
    expect(svc.seen.requests).toBe(0);

    const expiredCustomers = await issueServiceCertificate(ca, {
      name: 'customers',
      ttlSeconds: 60,
      now: past,
    });
    const stale = await startService(expiredCustomers);
    await expect(get(stale.url, agentFor(orders, 'customers'))).rejects.toThrow(/expired/i);
    expect(stale.seen.requests).toBe(0);
    // The same client and server with valid certificates do talk: the refusals above are the expiry.
    expect((await get(svc.url, agentFor(orders, 'customers'))).status).toBe(200);
  });

  it('(f) authorizePeer denying a peer name answers PEER_CERTIFICATE_INVALID (e.g. a deny list)', async () => {
    const deny = new Set(['orders']);
    const kinds: ServiceKind[] = [];
    const svc = await startService(customers, (peer, kind) => {
      kinds.push(kind);
      return !deny.has(peer);
    });
    const res = await get(svc.url, agentFor(orders, 'customers'));
    expect(res).toEqual({ status: 403, body: { code: 'PEER_CERTIFICATE_INVALID' } });
    expect(svc.seen.errors).toHaveLength(1);
    expect(isTrustedMsError(svc.seen.errors[0], 'PEER_CERTIFICATE_INVALID')).toBe(true);
    expect(kinds).toEqual(['service']);
    // Lifting the deny entry takes effect on the next request, on the same connection.
    deny.clear();
    expect(await get(svc.url, agentFor(orders, 'customers'))).toEqual({
      status: 200,
      body: { peer: 'orders' },
    });
  });

  it('authorizePeer refuses a certificate that expired after the connection was made, and another lab', async () => {
    const svc = await startService(customers);
    const agent = agentFor(orders, 'customers');
    expect((await get(svc.url, agent)).status).toBe(200);
    let socket: TLSSocket | undefined;
    const server = createHttpsServer(serverTlsOptions(customers, ca.certPem), (req, res) => {
      socket = req.socket as TLSSocket;
      res.end('ok');
    });
    const url = await listen(server);
    await (await request(url, { dispatcher: agent })).body.text();
    expect(socket).toBeDefined();
    const later = () => new Date(orders.notAfter.getTime() + 1000);
    expect(authorizePeer(socket!, () => true)).toBe('orders');
    expect(() => authorizePeer(socket!, () => true, { now: later })).toThrow(/expired/);
    expect(() => authorizePeer(socket!, () => true, { labId: 'lab2' })).toThrow(TrustedMsError);
    // Judged on the later of the wall and the lab clock: a part whose wall stepped back an hour
    // still refuses a certificate that has ended on the lab clock (fifth clock red team, S1); a lab
    // clock behind the wall, or not known yet (NaN), changes nothing.
    const labPastEnd = () => orders.notAfter.getTime() + 1000;
    expect(() => authorizePeer(socket!, () => true, { now: certificateEndClock(labPastEnd) })).toThrow(
      /expired/,
    );
    const labBehind = () => Date.now() - 3_600_000;
    expect(authorizePeer(socket!, () => true, { now: certificateEndClock(labBehind) })).toBe('orders');
    expect(authorizePeer(socket!, () => true, { now: certificateEndClock(() => Number.NaN) })).toBe('orders');
  });

  it("a client judges the server certificate's end on its end clock too: an impostor with an ended certificate is refused during a step back (sixth clock red team, I)", async () => {
    const svc = await startService(customers);
    const client = (endClock: () => Date) => {
      const agent = new Agent({
        connect: clientTlsConnector(orders, ca.certPem, 'customers', undefined, endClock),
      });
      cleanups.push(() => agent.destroy());
      return agent;
    };
    // the lab clock past the server certificate's end while this client's wall is not
    const ended = certificateEndClock(() => customers.notAfter.getTime() + 1000);
    const err = await get(svc.url, client(ended)).catch((e: unknown) => e);
    expect(String((err as { cause?: unknown }).cause ?? err)).toMatch(/has ended/);
    expect(svc.seen.requests).toBe(0);
    expect((await get(svc.url, client(certificateEndClock(() => Number.NaN)))).status).toBe(200);
  });

  it('gives the gateway kind to allowed()', async () => {
    const gateway = await issueServiceCertificate(ca, { name: 'gateway', kind: 'gateway' });
    const svc = await startService(customers, (_peer, kind) => kind === 'gateway');
    expect(await get(svc.url, agentFor(gateway, 'customers'))).toEqual({
      status: 200,
      body: { peer: 'gateway' },
    });
    expect((await get(svc.url, agentFor(orders, 'customers'))).status).toBe(403);
  });

  it('refuses a bad expected peer name or an identity without a SPIFFE id', () => {
    expect(() => clientTlsConnector(orders, ca.certPem, 'Customers')).toThrow(TrustedMsError);
    expect(() =>
      clientTlsConnector({ ...orders, spiffeId: 'spiffe://x/y' }, ca.certPem, 'customers'),
    ).toThrow(TrustedMsError);
  });
});

// What mTLS costs (CA, issue, a request against plain HTTP) is measured in bench/mtls.ts.
