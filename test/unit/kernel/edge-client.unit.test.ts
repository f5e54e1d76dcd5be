import { X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type TLSSocket } from 'node:tls';
import type { Dispatcher } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attackerClient } from '../../../src/attacks/http.js';
import { EdgeTls, gatewayServerNames, HTTP_EDGE } from '../../../src/defences/edge.js';
import { isTrustedMsError } from '../../../src/errors.js';
import {
  type EdgeConnectOptions,
  type EdgeView,
  edgeAgent,
  edgeCaPem,
  edgeConnectFor,
  edgeConnectOptions,
  gatewayRequest,
  withLabTime,
} from '../../../src/kernel/edge-client.js';
import { createLabCa, type LabCa } from '../../../src/pki/ca.js';
import { issueServiceCertificate, type ServiceIdentity } from '../../../src/pki/identity.js';
import { createHttpApp } from '../../../src/services/http.js';
import { machineBootId, machineMonotonicMs } from '../../../src/store/lab-clock-mark.js';

/*
 * The clients' side of edge:tls: a client of the gateway's HTTPS trusts the lab CA and nothing
 * else, checks the address it dialled against the certificate, and a handshake that does not prove
 * the gateway comes back as EDGE_CERTIFICATE_UNTRUSTED (a code, not a stack) before anything is sent.
 */

let dir: string;
let ca: LabCa;
let otherCa: LabCa;
let gateway: ServiceIdentity;
let caFile: string;
let otherCaFile: string;
const closers: (() => Promise<unknown>)[] = [];

/** An HTTPS server like the gateway's edge (src/defences/edge.ts), answering /healthz. */
async function edgeServer(edge: EdgeTls): Promise<{ url: string; app: ReturnType<typeof createHttpApp> }> {
  const app = createHttpApp({ https: edge.serverTls as object });
  app.get('/healthz', async () => ({ ok: true }));
  edge.onRenewed(() => (app.server as unknown as import('node:tls').Server).setSecureContext(edge.serverTls));
  await app.listen({ host: '127.0.0.1', port: 0 });
  closers.push(() => app.close());
  return { url: `https://127.0.0.1:${(app.server.address() as AddressInfo).port}`, app };
}

const codeOf = async (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'no error',
    (err: unknown) => (isTrustedMsError(err) ? err.code : `not a TrustedMsError: ${String(err)}`),
  );

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tms-edge-'));
  [ca, otherCa] = await Promise.all([createLabCa({ labId: 'edge1' }), createLabCa({ labId: 'edge2' })]);
  gateway = await issueServiceCertificate(ca, {
    name: 'gateway',
    kind: 'gateway',
    serverNames: gatewayServerNames('tls') as NonNullable<ReturnType<typeof gatewayServerNames>>,
  });
  caFile = join(dir, 'ca.pem');
  otherCaFile = join(dir, 'other-ca.pem');
  await writeFile(caFile, ca.certPem);
  await writeFile(otherCaFile, otherCa.certPem);
});

afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
});

describe('edge:tls, the client side', () => {
  it('the gateway certificate names 127.0.0.1 and localhost besides its SPIFFE id', () => {
    const san = new X509Certificate(gateway.certPem).subjectAltName ?? '';
    expect(san).toContain('IP Address:127.0.0.1');
    expect(san).toContain('DNS:localhost');
    expect(san).toContain('URI:spiffe://trusted-ms/edge1/gateway/gateway');
    expect(gatewayServerNames('http')).toBeUndefined();
    expect(gatewayServerNames('tls', 'https://tms-cafe-gateway:8080')?.dns).toEqual([
      'localhost',
      'tms-cafe-gateway',
    ]);
  });

  it('a client with the lab CA reaches the gateway over HTTPS, by 127.0.0.1 and by localhost', async () => {
    const { url } = await edgeServer(new EdgeTls(gateway));
    const agent = (await edgeAgent({ gatewayUrl: url, caFile })) as Dispatcher;
    closers.push(() => agent.close());
    expect(await gatewayRequest(url, '/healthz', { dispatcher: agent })).toEqual({ ok: true });
    const byName = url.replace('127.0.0.1', 'localhost');
    expect(await gatewayRequest(byName, '/healthz', { dispatcher: agent })).toEqual({ ok: true });
  });

  it('refuses a gateway whose certificate is from another CA: EDGE_CERTIFICATE_UNTRUSTED', async () => {
    const { url } = await edgeServer(new EdgeTls(gateway));
    const wrong = (await edgeAgent({ gatewayUrl: url, caFile: otherCaFile })) as Dispatcher;
    closers.push(() => wrong.close());
    expect(await codeOf(gatewayRequest(url, '/healthz', { dispatcher: wrong }))).toBe(
      'EDGE_CERTIFICATE_UNTRUSTED',
    );
    // and a client not given the lab CA at all (the system's CAs only) is refused the same way
    expect(await codeOf(gatewayRequest(url, '/healthz'))).toBe('EDGE_CERTIFICATE_UNTRUSTED');
  });

  it('refuses a lab certificate that does not name the address dialled (a service identity on the port)', async () => {
    const service = await issueServiceCertificate(ca, { name: 'orders' });
    const { url } = await edgeServer(new EdgeTls(service));
    const agent = (await edgeAgent({ gatewayUrl: url, caFile })) as Dispatcher;
    closers.push(() => agent.close());
    expect(await codeOf(gatewayRequest(url, '/healthz', { dispatcher: agent }))).toBe(
      'EDGE_CERTIFICATE_UNTRUSTED',
    );
  });

  it('refuses plain HTTP where the lab says HTTPS (a proxy that cannot speak TLS for the gateway)', async () => {
    const plain = createHttpServer((_req, res) => res.end('{"ok":true}'));
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise((r) => plain.close(r)));
    const url = `https://127.0.0.1:${(plain.address() as AddressInfo).port}`;
    const agent = (await edgeAgent({ gatewayUrl: url, caFile })) as Dispatcher;
    closers.push(() => agent.close());
    expect(await codeOf(gatewayRequest(url, '/healthz', { dispatcher: agent }))).toBe(
      'EDGE_CERTIFICATE_UNTRUSTED',
    );
  });

  it('an HTTPS gateway with no CA file known, or an unreadable one, is EDGE_CERTIFICATE_UNTRUSTED before any connection', () => {
    const refused = (f: () => unknown) => {
      try {
        f();
        return 'no error';
      } catch (err) {
        return isTrustedMsError(err) ? err.code : String(err);
      }
    };
    expect(refused(() => edgeCaPem({ gatewayUrl: 'https://127.0.0.1:1' }))).toBe(
      'EDGE_CERTIFICATE_UNTRUSTED',
    );
    expect(
      refused(() => edgeCaPem({ gatewayUrl: 'https://127.0.0.1:1', caFile: join(dir, 'none.pem') })),
    ).toBe('EDGE_CERTIFICATE_UNTRUSTED');
    expect(edgeCaPem({ gatewayUrl: 'http://127.0.0.1:1' })).toBeUndefined();
    expect(HTTP_EDGE.serverTls).toBeUndefined();
  });

  it('a client on another network checks the name it was told (the gateway) instead of the address it dialled', async () => {
    const { url } = await edgeServer(new EdgeTls(gateway));
    const port = Number(new URL(url).port);
    const handshake = (opts: object) =>
      new Promise<string>((resolve) => {
        const s: TLSSocket = connect({ ...opts, host: '127.0.0.1', port });
        s.once('secureConnect', () => {
          resolve('ok');
          s.destroy();
        });
        s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
      });
    expect(await handshake(edgeConnectOptions(ca.certPem, 'gateway'))).toBe('ok');
    expect(await handshake(edgeConnectOptions(ca.certPem, 'customers'))).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
  });

  it('judges the end of the gateway certificate on the later of the wall and the lab clock (faults I2)', async () => {
    // A gateway certificate that ended on the lab clock and is still valid on a wall an hour behind
    // it (an old key and certificate, kept, served on the gateway's port during a step back).
    const old = await issueServiceCertificate(ca, {
      name: 'gateway',
      kind: 'gateway',
      serverNames: gatewayServerNames('tls') as NonNullable<ReturnType<typeof gatewayServerNames>>,
      ttlSeconds: 60,
    });
    const { url } = await edgeServer(new EdgeTls(old));
    const request = async (lab: EdgeView) => {
      const agent = (await edgeAgent(lab)) as Dispatcher;
      closers.push(() => agent.close());
      return codeOf(gatewayRequest(url, '/healthz', { dispatcher: agent }));
    };
    const hourAhead = () => Date.now() + 3_600_000;
    expect(await request({ gatewayUrl: url, caFile, labTime: hourAhead })).toBe('EDGE_CERTIFICATE_UNTRUSTED');
    // The running lab's time as a client on the host reads it (the security service's run anchor).
    const home = join(dir, 'home-i2');
    await mkdir(home);
    const anchor = {
      labId: 'edge1',
      bootId: machineBootId(),
      labMs: hourAhead(),
      monotonicMs: machineMonotonicMs(),
    };
    await writeFile(join(home, 'lab-clock.json'), JSON.stringify({ highWaterMs: anchor.labMs, run: anchor }));
    const viaHome = withLabTime({ labId: 'edge1', gatewayUrl: url, caFile }, home);
    expect(await request(viaHome)).toBe('EDGE_CERTIFICATE_UNTRUSTED');
    // The same judgement in every client built from the lab view: the global dispatcher's options, the
    // attacker's client.
    const opts = edgeConnectFor(viaHome) as EdgeConnectOptions;
    const refusal = opts.checkServerIdentity?.('127.0.0.1', {
      ...new X509Certificate(old.certPem).toLegacyObject(),
    } as never);
    expect(refusal?.message).toMatch(/ended \(on the lab clock\)/);
    const attacker = attackerClient('127.0.0.1', viaHome);
    closers.push(() => attacker.close());
    expect(await codeOf(gatewayRequest(url, '/healthz', { dispatcher: attacker }))).toBe(
      'EDGE_CERTIFICATE_UNTRUSTED',
    );
    // A lab clock behind the wall, one not known (NaN, another lab's anchor) or none: the wall decides.
    expect(await request({ gatewayUrl: url, caFile, labTime: () => Date.now() - 3_600_000 })).toBe(
      'no error',
    );
    expect(await request({ gatewayUrl: url, caFile, labTime: () => Number.NaN })).toBe('no error');
    expect(await request(withLabTime({ labId: 'another', gatewayUrl: url, caFile }, home))).toBe('no error');
    expect(await request({ gatewayUrl: url, caFile })).toBe('no error');
  });

  it('serves a renewed certificate to new handshakes without a restart', async () => {
    const edge = new EdgeTls(gateway);
    const { url } = await edgeServer(edge);
    const served = () =>
      new Promise<string>((resolve, reject) => {
        const s = connect({
          ...edgeConnectOptions(ca.certPem),
          host: '127.0.0.1',
          port: Number(new URL(url).port),
        });
        s.once('secureConnect', () => {
          resolve(s.getPeerX509Certificate()?.serialNumber ?? '');
          s.destroy();
        });
        s.once('error', reject);
      });
    expect(await served()).toBe(new X509Certificate(gateway.certPem).serialNumber);
    const renewed = await issueServiceCertificate(ca, {
      name: 'gateway',
      kind: 'gateway',
      serverNames: gatewayServerNames('tls') as NonNullable<ReturnType<typeof gatewayServerNames>>,
    });
    edge.renew(renewed);
    expect(await served()).toBe(new X509Certificate(renewed.certPem).serialNumber);
  });
});
