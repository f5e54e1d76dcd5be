/**
 * What the lab PKI costs (moved here from test/unit/pki/mtls.unit.test.ts, where it was measured
 * and printed but asserted nothing): creating a lab CA, issuing one service certificate, and one
 * request over mutual TLS against plain HTTP on loopback, with and without keep-alive. Medians,
 * interleaved per round so that drift on a shared machine hits each alike.
 * Run: `npm run bench:mtls`. Environment: MTLS_BENCH_REQUESTS (200 per kind).
 */
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { loadavg } from 'node:os';
import type { TLSSocket } from 'node:tls';
import { Agent, request } from 'undici';
import { createLabCa } from '../src/pki/ca.js';
import { issueServiceCertificate } from '../src/pki/identity.js';
import { authorizePeer, clientTlsConnector, serverTlsOptions } from '../src/pki/mtls.js';

const REQUESTS = Math.max(1, Number(process.env.MTLS_BENCH_REQUESTS ?? 200));
const CA_ROUNDS = 20;
const ISSUE_ROUNDS = 50;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
}

async function timeOnce(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

async function listen(server: Server): Promise<{ port: number; close: () => Promise<void> }> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

async function main(): Promise<void> {
  const ca = await createLabCa({ labId: 'bench' });
  const [customers, orders] = await Promise.all([
    issueServiceCertificate(ca, { name: 'customers' }),
    issueServiceCertificate(ca, { name: 'orders' }),
  ]);

  const caMs: number[] = [];
  for (let i = 0; i < CA_ROUNDS; i++) caMs.push(await timeOnce(() => createLabCa({ labId: 'bench' })));
  const issueMs: number[] = [];
  for (let i = 0; i < ISSUE_ROUNDS; i++) {
    issueMs.push(await timeOnce(() => issueServiceCertificate(ca, { name: 'orders' })));
  }

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const socket = req.socket as Partial<TLSSocket>;
    const peer = socket.encrypted ? authorizePeer(req.socket as TLSSocket, () => true) : 'none';
    const text = JSON.stringify({ peer });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
  const https = await listen(createHttpsServer(serverTlsOptions(customers, ca.certPem), handler));
  const http = await listen(createHttpServer(handler));
  const tlsAgent = new Agent({ connect: clientTlsConnector(orders, ca.certPem, 'customers') });
  const plainAgent = new Agent();
  const kinds = {
    'mTLS keep-alive': { url: `https://127.0.0.1:${https.port}/`, agent: tlsAgent, reset: false },
    'mTLS new connection': { url: `https://127.0.0.1:${https.port}/`, agent: tlsAgent, reset: true },
    'HTTP keep-alive': { url: `http://127.0.0.1:${http.port}/`, agent: plainAgent, reset: false },
    'HTTP new connection': { url: `http://127.0.0.1:${http.port}/`, agent: plainAgent, reset: true },
  };
  const samples = Object.fromEntries(Object.keys(kinds).map((k) => [k, [] as number[]]));
  try {
    for (let i = 0; i < REQUESTS; i++) {
      for (const [name, k] of Object.entries(kinds)) {
        samples[name]?.push(
          await timeOnce(async () => {
            const res = await request(k.url, { dispatcher: k.agent, reset: k.reset });
            await res.body.text();
          }),
        );
      }
    }
  } finally {
    await Promise.all([tlsAgent.destroy(), plainAgent.destroy(), https.close(), http.close()]);
  }

  const rows = [
    ['createLabCa', `${median(caMs).toFixed(2)} ms`, `${CA_ROUNDS}`],
    ['issueServiceCertificate', `${median(issueMs).toFixed(2)} ms`, `${ISSUE_ROUNDS}`],
    ...Object.entries(samples).map(([k, xs]) => [
      `request, ${k}`,
      `${(median(xs) * 1000).toFixed(0)} us`,
      `${xs.length}`,
    ]),
  ];
  console.log(`load average ${loadavg()[0]?.toFixed(2)}, Node ${process.version}\n`);
  console.log('| operation | median | samples |\n| --- | --- | --- |');
  for (const r of rows) console.log(`| ${r.join(' | ')} |`);
}

await main();
