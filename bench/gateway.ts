/**
 * Throughput through the gateway, posture `none` (HTTP basic, cached) against `trusted` (cached
 * ticket, a fresh proof per request: one HMAC and one SHA-256 at the gateway), over the same trivial
 * upstream. The upstream and both gateways run in a child process; this process is the load: CONNS
 * keep-alive connections on loopback, each sending requests back to back for ROUND_MS, the two
 * postures interleaved over ROUNDS rounds. Prints req/s per round and their medians, and the median of the per-round ratios.
 * Run: `tsc -p tsconfig.build.json && node dist/bench/gateway.js`. Numbers only, no assertions.
 */
import { fork } from 'node:child_process';
import { createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { AttestationTable } from '../src/defences/attestation-table.js';
import { HTTP_EDGE } from '../src/defences/edge.js';
import type { Posture } from '../src/defences/posture.js';
import { defencesFor } from '../src/defences/presets.js';
import { createProof, PROOF_HEADER, ProofVerifier } from '../src/protocol/proof.js';
import { deriveSessionKey, newExchangeKeyPair, sealSessionKey } from '../src/protocol/session-key.js';
import { issueTicket, TicketVerifier } from '../src/protocol/ticket.js';
import { buildGateway } from '../src/services/gateway/app.js';
import { gatewayStrategies } from '../src/services/gateway/assemble.js';
import { createPool, poolUpstream } from '../src/services/gateway/upstream.js';

const HOST = '127.0.0.1';
const CONNS = 50;
const ROUNDS = 3;
const ROUND_MS = 3000;
const WARMUP_MS = 1000;
const ISSUER = 'trusted-ms://lab-bench/security';
const AUDIENCE = 'trusted-ms://lab-bench';
const PATH = '/svc/orders/db/orders/records/1';

interface ServerSetup {
  publicKeyPem: string;
  sealKey: string;
}

// ---- child: upstream + the two gateways ---------------------------------------------------------

async function serve(setup: ServerSetup): Promise<Record<'none' | 'trusted', string>> {
  const upstream = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"id":1,"item":"book"}');
    });
  });
  upstream.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => upstream.listen(0, HOST, r));
  const upstreamUrl = `http://${HOST}:${(upstream.address() as AddressInfo).port}`;
  const urls: Partial<Record<'none' | 'trusted', string>> = {};
  for (const posture of ['none', 'trusted'] as const satisfies readonly Posture[]) {
    const attestation = new AttestationTable([{ name: 'orders', state: 'trusted' }]);
    const upstreams = { orders: poolUpstream(createPool(upstreamUrl)) };
    // The gateway's own checks, as before: trusted's limits are left out (they measure nothing here).
    const defences = posture === 'trusted' ? defencesFor('trusted', ['limits:on']) : defencesFor(posture);
    const app = buildGateway({
      edge: HTTP_EDGE,
      ...gatewayStrategies(defences, {
        attestation,
        checkPassword: async (user) => ({ user, role: 'analyst', perms: { orders: ['read'] } }),
        verifier: new TicketVerifier({
          keys: new Map([['bench', createPublicKey(setup.publicKeyPem)]]),
          issuer: ISSUER,
          audience: AUDIENCE,
          posture: 'trusted',
        }),
        sealKey: Buffer.from(setup.sealKey, 'base64url'),
        proofs: new ProofVerifier(),
        auth: upstreams.orders,
      }),
      upstreams,
      attestation,
      log: () => undefined,
    });
    await app.listen({ host: HOST, port: 0 });
    urls[posture] = `http://${HOST}:${(app.server.address() as AddressInfo).port}`;
  }
  return urls as Record<'none' | 'trusted', string>;
}

// ---- parent: the load ---------------------------------------------------------------------------

/** req/s over `ms` with CONNS requests always in flight; `headers()` is called per request. */
async function load(pool: Pool, headers: () => Record<string, string>, ms: number): Promise<number> {
  const end = performance.now() + ms;
  let done = 0;
  let failed = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: CONNS }, async () => {
      while (performance.now() < end) {
        const res = await pool.request({ method: 'GET', path: PATH, headers: headers() });
        await res.body.dump();
        if (res.statusCode === 200) done += 1;
        else failed += 1;
      }
    }),
  );
  if (failed > 0) throw new Error(`${failed} requests failed`);
  return (done * 1000) / (performance.now() - start);
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

async function main(): Promise<void> {
  const signing = generateKeyPairSync('ed25519');
  const sealKey = randomBytes(32);
  // a trusted login: X25519 exchange, the session key sealed into the ticket
  const client = newExchangeKeyPair();
  const server = newExchangeKeyPair();
  const challengeId = randomBytes(16).toString('base64url');
  const sessionKey = deriveSessionKey(client.privateKey, server.publicKeyRaw, challengeId);
  const iat = Math.floor(Date.now() / 1000);
  const jti = randomBytes(16).toString('base64url');
  const ticket = issueTicket(
    { kid: 'bench', privateKey: signing.privateKey },
    {
      v: 1,
      iss: ISSUER,
      aud: AUDIENCE,
      sub: 'alice',
      role: 'analyst',
      perms: { orders: ['read'] },
      iat,
      exp: iat + 3600,
      jti,
      posture: 'trusted',
      cnf: { jkt: randomBytes(32).toString('base64url'), sk: sealSessionKey(sealKey, sessionKey, jti) },
    },
  );

  const child = fork(fileURLToPath(import.meta.url), ['serve'], { stdio: 'inherit' });
  const urls = await new Promise<Record<'none' | 'trusted', string>>((resolve, reject) => {
    child.once('message', (m) => resolve(m as Record<'none' | 'trusted', string>));
    child.once('exit', (code) => reject(new Error(`the server process exited (${code})`)));
    child.send({
      publicKeyPem: signing.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      sealKey: sealKey.toString('base64url'),
    } satisfies ServerSetup);
  });

  const basic = `Basic ${Buffer.from('alice:password').toString('base64')}`;
  const bearer = `Bearer ${ticket}`;
  const headersOf = {
    none: () => ({ authorization: basic }),
    trusted: () => ({
      authorization: bearer,
      [PROOF_HEADER]: createProof({ sessionKey, method: 'GET', path: PATH, jti }),
    }),
  };
  const pools = {
    none: new Pool(urls.none, { connections: CONNS }),
    trusted: new Pool(urls.trusted, { connections: CONNS }),
  };
  try {
    for (const p of ['none', 'trusted'] as const) await load(pools[p], headersOf[p], WARMUP_MS);
    const results: Record<'none' | 'trusted', number[]> = { none: [], trusted: [] };
    console.log(`gateway throughput: ${CONNS} keep-alive connections, ${ROUND_MS} ms per posture and round`);
    console.log(`node ${process.version}, ${cpus().length} cpus (${cpus()[0]?.model ?? '?'})\n`);
    console.log('| round | none req/s | trusted req/s | trusted/none |');
    console.log('| ---: | ---: | ---: | ---: |');
    for (let r = 0; r < ROUNDS; r++) {
      // alternate which goes first so that drift on a shared machine hits both alike
      const order = r % 2 === 0 ? (['none', 'trusted'] as const) : (['trusted', 'none'] as const);
      const got: Partial<Record<'none' | 'trusted', number>> = {};
      for (const p of order) got[p] = await load(pools[p], headersOf[p], ROUND_MS);
      results.none.push(got.none as number);
      results.trusted.push(got.trusted as number);
      console.log(
        `| ${r + 1} | ${Math.round(got.none as number)} | ${Math.round(got.trusted as number)} | ${((got.trusted as number) / (got.none as number)).toFixed(2)} |`,
      );
    }
    const ratios = results.trusted.map((t, i) => t / (results.none[i] as number));
    console.log(
      `| median | ${Math.round(median(results.none))} | ${Math.round(median(results.trusted))} | ${median(ratios).toFixed(2)} |`,
    );
  } finally {
    await Promise.all([pools.none.destroy(), pools.trusted.destroy()]);
    child.kill('SIGTERM');
  }
}

if (process.argv[2] === 'serve') {
  process.once('message', (setup) => {
    void serve(setup as ServerSetup).then((urls) => process.send?.(urls));
  });
  process.once('disconnect', () => process.exit(0));
  process.once('SIGTERM', () => process.exit(0));
} else {
  await main();
}
