import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attackerClient } from '../../../src/attacks/http.js';
import { EdgeTls, gatewayServerNames } from '../../../src/defences/edge.js';
import { createLabCa } from '../../../src/pki/ca.js';
import { issueServiceCertificate } from '../../../src/pki/identity.js';

/*
 * The attacker's own client speaks HTTPS to an edge:tls gateway (the scenarios' password tries, the
 * lock-out and enumeration sources): undici hands a connector only the address of a connection, so
 * the TLS options must be the connector's own. Before that was so, every try of accounts.* against
 * a trusted lab failed its handshake (UNABLE_TO_VERIFY_LEAF_SIGNATURE) and the scenarios were
 * inconclusive.
 */
let dir: string;
let url: string;
let caFile: string;
let server: ReturnType<typeof createServer>;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tms-attacker-edge-'));
  const ca = await createLabCa({ labId: 'edge3' });
  caFile = join(dir, 'ca.pem');
  await writeFile(caFile, ca.certPem);
  const gateway = await issueServiceCertificate(ca, {
    name: 'gateway',
    kind: 'gateway',
    serverNames: gatewayServerNames('tls') as NonNullable<ReturnType<typeof gatewayServerNames>>,
  });
  server = createServer(new EdgeTls(gateway).serverTls, (req, res) => res.end(req.socket.remoteAddress));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await rm(dir, { recursive: true, force: true });
});

describe("the attacker's client and an edge:tls gateway", () => {
  it('reaches the gateway over HTTPS, trusting the lab CA, from its own address', async () => {
    const client = attackerClient(undefined, { gatewayUrl: url, caFile });
    try {
      const res = await request(`${url}/`, { dispatcher: client });
      const from = await res.body.text();
      expect(res.statusCode).toBe(200);
      if (process.platform === 'linux') expect(from).toBe('127.0.0.2');
    } finally {
      await client.close();
    }
  });

  it('without the lab it does not trust the gateway (the lab CA is no system CA)', async () => {
    const client = attackerClient();
    try {
      await expect(request(`${url}/`, { dispatcher: client })).rejects.toMatchObject({
        code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
      });
    } finally {
      await client.close();
    }
  });
});
