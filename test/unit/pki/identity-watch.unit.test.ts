import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { Agent, request } from 'undici';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { MutualTls } from '../../../src/defences/links.js';
import { createLabCa, type LabCa } from '../../../src/pki/ca.js';
import { issueServiceCertificate, type ServiceIdentity } from '../../../src/pki/identity.js';
import { writeIdentity } from '../../../src/pki/identity-files.js';
import { IdentityFileWatch } from '../../../src/pki/identity-watch.js';

const LAB = 'ab12cd34';
let ca: LabCa;
beforeAll(async () => {
  ca = await createLabCa({ labId: LAB });
});
const serial = (id: ServiceIdentity) => new X509Certificate(id.certPem).serialNumber;

describe('following an identity folder', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tms-idwatch-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('takes a renewed identity once, skips a certificate without its key and one of another service', async () => {
    const first = await issueServiceCertificate(ca, { name: 'orders' });
    await writeIdentity(dir, first);
    const taken: string[] = [];
    const watch = new IdentityFileWatch(dir, first, (id) => taken.push(serial(id)), { intervalMs: 60_000 });
    try {
      expect(await watch.check()).toBe(false);
      const second = await issueServiceCertificate(ca, { name: 'orders' });
      // the new certificate with the old key: what a reader between two renames would see
      await writeFile(join(dir, 'cert.pem'), second.certPem);
      expect(await watch.check()).toBe(false);
      await writeIdentity(dir, second);
      expect(await watch.check()).toBe(true);
      expect(taken).toEqual([serial(second)]);
      expect(await watch.check()).toBe(false);
      await writeIdentity(dir, await issueServiceCertificate(ca, { name: 'catalog' }));
      expect(await watch.check()).toBe(false);
      expect(taken).toHaveLength(1);
    } finally {
      watch.stop();
    }
  });
});

describe('hot reload with mTLS links', () => {
  let server: Server;
  let orders: MutualTls;
  let gateway: MutualTls;
  let url: string;
  const seenClients: string[] = [];

  beforeEach(async () => {
    orders = new MutualTls(await issueServiceCertificate(ca, { name: 'orders' }), ca.certPem);
    gateway = new MutualTls(
      await issueServiceCertificate(ca, { name: 'gateway', kind: 'gateway' }),
      ca.certPem,
    );
    server = createServer(orders.serverTls, (req, res) => {
      const peer = (req.socket as TLSSocket).getPeerX509Certificate();
      seenClients.push(peer?.serialNumber ?? '');
      res.end('ok');
    });
    orders.onRenewed(() => server.setSecureContext(orders.serverTls));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `https://127.0.0.1:${(server.address() as { port: number }).port}/`;
  });
  afterEach(async () => {
    await new Promise((r) => server.close(r));
    server.closeAllConnections();
  });

  /** A new connection's view: the server certificate's serial (the server records the client's). */
  const call = async (): Promise<string> => {
    let served = '';
    const check = gateway.connect('orders').checkServerIdentity;
    const probe = new Agent({
      connect: {
        ...gateway.connect('orders'),
        checkServerIdentity: (host, cert) => {
          served = cert.serialNumber;
          return check(host, cert);
        },
      },
    });
    const res = await request(url, { dispatcher: probe });
    await res.body.text();
    await probe.close();
    return served;
  };

  it('new connections get the renewed server and client certificates; the server does not restart', async () => {
    const before = await call();
    expect(before).toBe(serial(orders.identity));
    const renewedOrders = await issueServiceCertificate(ca, { name: 'orders' });
    orders.renew(renewedOrders);
    const renewedGateway = await issueServiceCertificate(ca, { name: 'gateway', kind: 'gateway' });
    gateway.renew(renewedGateway);
    expect(await call()).toBe(serial(renewedOrders));
    expect(seenClients.at(-1)).toBe(serial(renewedGateway));
    expect(server.listening).toBe(true);
  });

  it('refuses a renewal that changes the SPIFFE id', async () => {
    expect(() => orders.renew(gateway.identity)).toThrow(expect.objectContaining({ code: 'INVALID_INPUT' }));
  });
});
