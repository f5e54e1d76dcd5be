import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InterceptingProxy, TlsRecordSplitter } from '../../../src/attacks/proxy.js';
import { createLabCa } from '../../../src/pki/ca.js';
import { issueServiceCertificate } from '../../../src/pki/identity.js';
import { clientTlsConnector, serverTlsOptions } from '../../../src/pki/mtls.js';

const RECORDS = { database: 'accounts', records: [{ id: 'acc-1', secret: 'the-marker' }] };
const BODY = JSON.stringify(RECORDS);
// Framed with Content-Length, as the lab's services (fastify) answer.
const HEADERS = { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(BODY)) };

function listen(server: Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)),
  );
}

describe('the intercepting proxy on a plain HTTP link', () => {
  let server: Server;
  let port: number;
  beforeAll(async () => {
    server = createHttpServer((_req, res) => {
      res.writeHead(200, HEADERS);
      res.end(BODY);
    });
    port = await listen(server);
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('relays unchanged and records both directions', async () => {
    const proxy = new InterceptingProxy({ upstream: { host: '127.0.0.1', port }, lifetimeMs: 10_000 });
    const at = await proxy.listen();
    const agent = new Agent();
    try {
      const res = await request(`http://127.0.0.1:${at}/db/accounts/records`, {
        dispatcher: agent,
        headers: { 'x-tms-user': 'victim' },
      });
      expect(await res.body.json()).toEqual(RECORDS);
      expect(proxy.bytesUp().toString()).toContain('x-tms-user: victim');
      expect(proxy.bytesDown().toString()).toContain('the-marker');
      expect(proxy.stats()).toMatchObject({ connections: 1, sawTls: false, httpRewrites: 0 });
    } finally {
      await agent.close();
      await proxy.close();
    }
  });

  it('adds a forged record to each answer, keeping keep-alive framing right', async () => {
    const proxy = new InterceptingProxy({
      upstream: { host: '127.0.0.1', port },
      tamper: true,
      forged: { id: 'forged' },
    });
    const at = await proxy.listen();
    const agent = new Agent({ connections: 1 });
    try {
      for (let i = 0; i < 3; i++) {
        const res = await request(`http://127.0.0.1:${at}/x`, { dispatcher: agent });
        const body = (await res.body.json()) as typeof RECORDS;
        expect(body.records.map((r) => r.id)).toEqual(['acc-1', 'forged']);
      }
      expect(proxy.stats()).toMatchObject({ connections: 1, httpRewrites: 3 });
    } finally {
      await agent.close();
      await proxy.close();
    }
  });
});

describe('the intercepting proxy on an mTLS link', () => {
  let server: Server;
  let port: number;
  let connector: ReturnType<typeof clientTlsConnector>;
  beforeAll(async () => {
    const ca = await createLabCa({ labId: 'lab-proxy' });
    const accounts = await issueServiceCertificate(ca, { name: 'accounts' });
    const customers = await issueServiceCertificate(ca, { name: 'customers' });
    server = createHttpsServer(serverTlsOptions(accounts, ca.certPem), (_req, res) => {
      res.writeHead(200, HEADERS);
      res.end(BODY);
    });
    port = await listen(server);
    connector = clientTlsConnector(customers, ca.certPem, 'accounts');
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('sees ciphertext only', async () => {
    const proxy = new InterceptingProxy({ upstream: { host: '127.0.0.1', port } });
    const at = await proxy.listen();
    const agent = new Agent({ connect: connector });
    try {
      const res = await request(`https://127.0.0.1:${at}/db/accounts/records`, { dispatcher: agent });
      expect(await res.body.json()).toEqual(RECORDS);
      expect(proxy.stats().sawTls).toBe(true);
      expect(proxy.stats().bytesDown).toBeGreaterThan(1000);
      expect(proxy.bytesDown().includes('the-marker')).toBe(false);
      expect(proxy.bytesUp().includes('/db/accounts')).toBe(false);
    } finally {
      await agent.close();
      await proxy.close();
    }
  });

  it('breaks the connection when it flips ciphertext: the record fails its authentication tag', async () => {
    const proxy = new InterceptingProxy({ upstream: { host: '127.0.0.1', port }, tamper: true });
    const at = await proxy.listen();
    try {
      // A raw TLS client, to see the reason undici reports only as a closed socket.
      const err = await new Promise<Error>((resolve) => {
        const socket = tlsConnect({ host: '127.0.0.1', port: at, ...connector }, () => {
          socket.write('GET /db/accounts/records HTTP/1.1\r\nhost: accounts\r\n\r\n');
        });
        socket.on('error', resolve);
        socket.on('close', () => resolve(new Error('closed without an error')));
      });
      expect(err.message).toMatch(/bad record mac/i);
      expect(proxy.stats().tlsRecordsAltered).toBeGreaterThan(0);
    } finally {
      await proxy.close();
    }
  });

  it('terminating TLS with a certificate from another CA: the caller refuses it', async () => {
    const other = await createLabCa({ labId: 'lab-proxy' });
    const fake = await issueServiceCertificate(other, { name: 'accounts' });
    const proxy = new InterceptingProxy({
      upstream: { host: '127.0.0.1', port },
      tls: { certPem: fake.certPem, keyPem: fake.keyPem },
    });
    const at = await proxy.listen();
    const agent = new Agent({ connect: connector });
    try {
      await expect(
        request(`https://127.0.0.1:${at}/db/accounts/records`, { dispatcher: agent }),
      ).rejects.toThrow(/certificate/i);
      expect(proxy.stats().bytesUp).toBe(0);
    } finally {
      await agent.close();
      await proxy.close();
    }
  });
});

describe('TlsRecordSplitter', () => {
  it('gives whole records whatever the chunking', () => {
    const rec = (type: number, n: number) =>
      Buffer.concat([Buffer.from([type, 3, 3, n >> 8, n & 0xff]), Buffer.alloc(n, 7)]);
    const stream = Buffer.concat([rec(0x16, 3), rec(0x17, 300), rec(0x17, 1)]);
    const seen: number[] = [];
    const s = new TlsRecordSplitter((r) => {
      seen.push(r.length);
      return r;
    });
    const out: Buffer[] = [];
    for (let i = 0; i < stream.length; i += 7) out.push(...s.push(stream.subarray(i, i + 7)));
    expect(seen).toEqual([8, 305, 6]);
    expect(Buffer.concat(out).equals(stream)).toBe(true);
  });
});
