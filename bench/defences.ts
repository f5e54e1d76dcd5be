/**
 * What each defence costs per request, alone, measured with the strategy classes the parts run
 * (src/defences/): so a change that makes one defence slower shows up here by name, whatever else
 * moved in `npm run bench`. Each figure is µs per call in batches of calls, the strategies measured
 * interleaved, round after round, so drift on a shared machine hits each alike; the figure is the
 * 10th percentile of the rounds, not the median: other work on the machine only adds time, and on
 * 2 cores at a load of 8 (measured) it preempts more than half the batches, so the median moved 10x
 * between two runs where the fast rounds agreed. The links
 * defence is a socket round trip over keep-alive (mTLS minus plain HTTP on loopback).
 *
 * Each figure is also divided by a reference measured in the same rounds (a sum over 4,096
 * numbers: what a slower machine slows alike), and that normalised cost is compared with the
 * one in bench/defences-baseline.json (recorded with `--record`); a defence more than 3 times its
 * baseline is flagged. It is never a test: read the ratios beside the load average printed with them.
 *
 * Run: `npm run bench:defences` (`-- --json`, `-- --record` to write the baseline, `-- --check` to
 * exit 1 when a defence is flagged).
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, Client, type Dispatcher, request } from 'undici';
import { AttestationTable } from '../src/defences/attestation-table.js';
import { EDGE_SERVER_NAMES, EdgeTls } from '../src/defences/edge.js';
import { SignedFeeds } from '../src/defences/feeds.js';
import { AddressAndUserLimits, NO_LIMITS } from '../src/defences/limits.js';
import { DEFAULT_PEER_CALLS, PeerCallPolicy } from '../src/defences/peer-calls.js';
import { BasicAtGateway } from '../src/defences/request/gateway-basic.js';
import { TicketAtGateway } from '../src/defences/request/gateway-ticket.js';
import { GATEWAY_VOUCHES, TicketAtService } from '../src/defences/request/service.js';
import type { GatewayRequest } from '../src/defences/request/types.js';
import { edgeConnectOptions } from '../src/kernel/edge-client.js';
import { GATEWAY_LIMITS } from '../src/lab/plan.js';
import { createLabCa } from '../src/pki/ca.js';
import { issueServiceCertificate } from '../src/pki/identity.js';
import { authorizePeer, clientTlsConnector, serverTlsOptions } from '../src/pki/mtls.js';
import { LabClock } from '../src/protocol/lab-clock.js';
import { createProof, PROOF_HEADER, ProofVerifier } from '../src/protocol/proof.js';
import { RevocationView } from '../src/protocol/revocation-list.js';
import { sealSessionKey } from '../src/protocol/session-key.js';
import { FEED_FIELD, feedTrustKey, signFeed } from '../src/protocol/signed-feed.js';
import { issueTicket, type TicketClaims, TicketVerifier } from '../src/protocol/ticket.js';

const ROUNDS = 31;
const BATCH = 500;
const LINK_REQUESTS = 300;
// Not 2: at a load of 10, request:bound (HMACs) ran at 8.4 and 17.3 µs in two runs a minute apart,
// while the reference did not move; a regression worth catching (an Ed25519 verify per request is
// 125 µs, 15x) is far above 3.
const FLAG_RATIO = 3;
const REFERENCE = 'reference (not a defence)';
const here = dirname(fileURLToPath(import.meta.url));
// dist/bench/ when built; the baseline is kept beside the sources.
const BASELINE = join(here, '..', '..', 'bench', 'defences-baseline.json');

export interface DefenceFigure {
  /** `<defence>:<choice>`, and where it runs */
  name: string;
  us: number;
  what: string;
}

/** The fast end of a sample: what the code costs when the machine lets it run. */
function fastRounds(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 10)] ?? Number.NaN;
}

/** One call of a strategy: synchronous ones are timed in batches, asynchronous ones awaited each. */
type Step = (i: number) => unknown;

async function inProcessFigures(): Promise<DefenceFigure[]> {
  const ed = generateKeyPairSync('ed25519');
  const issuer = 'trusted-ms://lab-bench/security';
  const audience = 'trusted-ms://lab-bench';
  const sealKey = randomBytes(32);
  const sessionKey = randomBytes(32);
  const nowS = Math.floor(Date.now() / 1000);
  const jti = randomBytes(16).toString('base64url');
  const claims: TicketClaims = {
    v: 1,
    iss: issuer,
    aud: audience,
    sub: 'alice',
    role: 'analyst',
    perms: { orders: ['query', 'read'], catalog: ['read'] },
    iat: nowS,
    exp: nowS + 3600,
    jti,
    posture: 'trusted',
    cnf: { jkt: randomBytes(32).toString('base64url'), sk: sealSessionKey(sealKey, sessionKey, jti) },
  };
  const ticket = issueTicket({ kid: 'bench', privateKey: ed.privateKey }, claims);
  const verifier = (): TicketVerifier =>
    new TicketVerifier({ keys: new Map([['bench', ed.publicKey]]), issuer, audience });
  const revocations = new RevocationView();
  revocations.replace({
    version: 'bench',
    users: { mallory: { revoked: true, notBefore: nowS } },
    quarantined: ['ledger'],
    untrusted: [],
  });

  const path = '/svc/orders/db/orders/records/ord-1';
  const base = (headers: GatewayRequest['headers']): GatewayRequest => ({
    method: 'GET',
    url: path,
    headers,
    body: Buffer.alloc(0),
    ip: '127.0.0.1',
  });
  const basicHeader = `Basic ${Buffer.from('alice:correct horse').toString('base64')}`;
  const basic = new BasicAtGateway({
    checkPassword: async (user) => ({ user, role: 'analyst', perms: { orders: ['read'] } }),
    revocations,
  });
  await basic.authenticate(base({ authorization: basicHeader })); // cached from here on
  const bearerAtGateway = new TicketAtGateway({ verifier: verifier(), revocations });
  const bearerRequest = base({ authorization: `Bearer ${ticket}` });
  const total = ROUNDS * BATCH + BATCH;
  const boundTickets = verifier();
  const proofs = Array.from({ length: total }, () => createProof({ sessionKey, method: 'GET', path, jti }));
  // A new replay cache each round: one growing over the whole run (16,000 entries) moved this figure
  // 5x between runs as its map grew and was collected; here it holds one round's 500.
  const boundAtGateway = (): TicketAtGateway =>
    new TicketAtGateway({
      verifier: boundTickets,
      revocations,
      bound: { sealKey, proofs: new ProofVerifier({ maxEntries: 4 * BATCH, maxEntriesPerUser: 4 * BATCH }) },
    });
  let bound = boundAtGateway();
  const boundRequests = proofs.map((p) => base({ authorization: `Bearer ${ticket}`, [PROOF_HEADER]: p }));
  const ticketAtService = new TicketAtService(verifier(), revocations);
  const ticketHeaders = { authorization: `Bearer ${ticket}` };
  const vouchedHeaders = {
    'x-tms-user': 'alice',
    'x-tms-role': 'analyst',
    'x-tms-perms': JSON.stringify({ orders: ['read'] }),
  };
  const limits = AddressAndUserLimits.fromConfig({
    ...GATEWAY_LIMITS,
    perUser: 1e9,
    userBurst: 1e9,
    perClient: 1e9,
    burst: 1e9,
  });
  const table = new AttestationTable(
    Array.from({ length: 20 }, (_, k) => ({ name: `svc-${k}`, state: 'trusted' as const })),
  );

  const edge = new PeerCallPolicy({ orders: DEFAULT_PEER_CALLS }, ['customers']);

  // feeds:signed as the gateway runs it: two tracked feeds, each taken once (verified), then only
  // their age compared with the bound per request.
  const feedKey = generateKeyPairSync('ed25519').privateKey;
  const feedTrust = feedTrustKey(feedKey);
  const feedClock = new LabClock();
  feedClock.adopt(Date.now());
  const feeds = new SignedFeeds({ keys: [feedTrust], maxAgeMs: 3_600_000 }, 'bench', () => feedClock.now(), [
    'revocations',
    'services',
  ]);
  for (const name of ['revocations', 'services'] as const) {
    const envelope = signFeed(
      { kid: feedTrust.kid, privateKey: feedKey },
      { lab: 'bench', name, version: 1, issuedAt: Math.floor(feedClock.now()), body: {} },
    );
    feeds.open(name, { [FEED_FIELD]: envelope }, (b) => b);
  }

  // Pure computation, no allocation: a reference that garbage collection does not move (HMACs did,
  // 2x between runs).
  const referenceInput = Array.from({ length: 4096 }, (_, k) => k);
  const steps: Array<DefenceFigure & { step: Step; sync: boolean }> = [
    {
      name: REFERENCE,
      what: 'a sum over 4,096 numbers: the machine’s speed at this moment',
      us: 0,
      sync: true,
      step: (i) => {
        let sum = i;
        for (let h = 0; h < referenceInput.length; h++) sum = (sum + (referenceInput[h] as number)) | 0;
        return sum;
      },
    },
    {
      name: 'request:basic at the gateway',
      what: 'a cached password check, revocation looked up',
      us: 0,
      sync: false,
      step: () => basic.authenticate(base({ authorization: basicHeader })),
    },
    {
      name: 'request:basic at a service',
      what: 'the gateway’s x-tms-* headers read',
      us: 0,
      sync: true,
      step: () => GATEWAY_VOUCHES.authenticate(vouchedHeaders),
    },
    {
      name: 'request:bearer at the gateway',
      what: 'a cached ticket, revocation looked up',
      us: 0,
      sync: false,
      step: () => bearerAtGateway.authenticate(bearerRequest),
    },
    {
      name: 'request:bound at the gateway',
      what: 'bearer + a fresh proof (HMAC, replay cache)',
      us: 0,
      sync: false,
      step: (i) => bound.authenticate(boundRequests[i % total] as GatewayRequest),
    },
    {
      name: 'request:bearer|bound at a service',
      what: 'the forwarded ticket checked again (cached)',
      us: 0,
      sync: true,
      step: () => ticketAtService.authenticate(ticketHeaders),
    },
    {
      name: 'limits:on at the gateway',
      what: 'per-address and per-user meters, under their rates',
      us: 0,
      sync: false,
      step: () => {
        limits.admitClient('127.0.0.1');
        return limits.admitUser('alice');
      },
    },
    {
      name: 'limits:off at the gateway',
      what: 'the no-op strategy (the floor)',
      us: 0,
      sync: false,
      step: () => {
        NO_LIMITS.admitClient('127.0.0.1');
        return NO_LIMITS.admitUser('alice');
      },
    },
    {
      name: 'attestation gate at the gateway',
      what: 'the service’s state and quarantine looked up',
      us: 0,
      sync: true,
      step: (i) => table.state(`svc-${i % 20}`) === 'trusted' && !revocations.quarantined(`svc-${i % 20}`),
    },
    {
      name: 'feeds:signed at the gateway',
      what: 'the revocation list and attestation table held within the staleness bound (two ages compared)',
      us: 0,
      sync: true,
      step: () => feeds.assertFresh(),
    },
    {
      name: 'links:mtls edge policy at a service',
      what: 'a calling service’s method and path against its edge (identity.relayed-ticket)',
      us: 0,
      sync: true,
      step: () => edge.check('orders', 'GET', '/db/customers/records'),
    },
  ];

  // Each proof is used once across all rounds (a second use is a replay): one index for every round.
  const samples = steps.map(() => [] as number[]);
  let i = 0;
  for (let r = 0; r < ROUNDS + 1; r++) {
    bound = boundAtGateway();
    for (const [k, s] of steps.entries()) {
      const start = i;
      const t0 = performance.now();
      if (s.sync) for (let b = 0; b < BATCH; b++) s.step(start + b);
      else for (let b = 0; b < BATCH; b++) await s.step(start + b);
      const us = ((performance.now() - t0) * 1000) / BATCH;
      if (r > 0) samples[k]?.push(us); // round 0 warms the JIT and the caches
      // bound uses its own proofs; the others ignore i
      if (s.name.startsWith('request:bound')) i += BATCH;
    }
  }
  return steps.map((s, k) => ({ name: s.name, what: s.what, us: fastRounds(samples[k] ?? []) }));
}

/** mTLS minus plain HTTP, one request on a kept-alive connection (what a hop costs per request). */
async function linkFigures(): Promise<DefenceFigure[]> {
  const ca = await createLabCa({ labId: 'bench' });
  const [server, client] = await Promise.all([
    issueServiceCertificate(ca, { name: 'orders' }),
    issueServiceCertificate(ca, { name: 'gateway', kind: 'gateway' }),
  ]);
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    if ((req.socket as { encrypted?: boolean }).encrypted) authorizePeer(req.socket as never, () => true);
    res.writeHead(200, { 'content-length': 2 });
    res.end('ok');
  };
  const https = createHttpsServer(serverTlsOptions(server, ca.certPem), handler);
  const http = createHttpServer(handler);
  await Promise.all(
    [https, http].map((s) => new Promise<void>((resolve) => s.listen(0, '127.0.0.1', () => resolve()))),
  );
  const port = (s: typeof http): number => (s.address() as AddressInfo).port;
  const tls = new Agent({ connect: clientTlsConnector(client, ca.certPem, 'orders') });
  const plain = new Agent();
  const one = async (url: string, dispatcher: Agent): Promise<number> => {
    const t0 = performance.now();
    await (await request(url, { dispatcher })).body.text();
    return (performance.now() - t0) * 1000;
  };
  const tlsUs: number[] = [];
  const plainUs: number[] = [];
  try {
    for (let k = 0; k < LINK_REQUESTS + 20; k++) {
      const a = await one(`https://127.0.0.1:${port(https)}/`, tls);
      const b = await one(`http://127.0.0.1:${port(http)}/`, plain);
      if (k >= 20) {
        tlsUs.push(a);
        plainUs.push(b);
      }
    }
  } finally {
    await Promise.all([tls.destroy(), plain.destroy()]);
    for (const s of [https, http]) {
      s.closeAllConnections();
      s.close();
    }
  }
  return [
    {
      name: 'links:mtls, per hop',
      what: 'a kept-alive request over mTLS minus the same over HTTP',
      us: fastRounds(tlsUs) - fastRounds(plainUs),
    },
    {
      name: 'links:plain, per hop',
      what: 'a kept-alive request over HTTP (the floor)',
      us: fastRounds(plainUs),
    },
  ];
}

/**
 * edge:tls minus HTTP at the gateway's edge: a request on a kept-alive connection (what each
 * request of a logged-in user pays), and a request on a new connection (the handshake: what a
 * client pays once per connection, `curl` on every call). Server-authenticated TLS as the gateway
 * serves it (src/defences/edge.ts), the client checking the lab CA (src/kernel/edge-client.ts).
 */
async function edgeFigures(): Promise<DefenceFigure[]> {
  const ca = await createLabCa({ labId: 'bench' });
  const gateway = await issueServiceCertificate(ca, {
    name: 'gateway',
    kind: 'gateway',
    serverNames: EDGE_SERVER_NAMES,
  });
  const handler = (_req: IncomingMessage, res: ServerResponse): void => {
    res.writeHead(200, { 'content-length': 2 });
    res.end('ok');
  };
  const https = createHttpsServer(new EdgeTls(gateway).serverTls, handler);
  const http = createHttpServer(handler);
  await Promise.all(
    [https, http].map((s) => new Promise<void>((resolve) => s.listen(0, '127.0.0.1', () => resolve()))),
  );
  const port = (s: typeof http): number => (s.address() as AddressInfo).port;
  const tls = edgeConnectOptions(ca.certPem);
  const keptTls = new Agent({ connect: tls });
  const keptPlain = new Agent();
  const one = async (url: string, dispatcher: Dispatcher): Promise<number> => {
    const t0 = performance.now();
    await (await request(url, { dispatcher })).body.text();
    return (performance.now() - t0) * 1000;
  };
  const fresh = async (url: string, connect?: object): Promise<number> => {
    const client = new Client(new URL(url).origin, connect ? { connect } : {});
    try {
      return await one(url, client);
    } finally {
      await client.destroy();
    }
  };
  const s = { kept: [[], []] as number[][], fresh: [[], []] as number[][] };
  const httpsUrl = `https://127.0.0.1:${port(https)}/`;
  const httpUrl = `http://127.0.0.1:${port(http)}/`;
  try {
    for (let k = 0; k < LINK_REQUESTS + 20; k++) {
      const a = await one(httpsUrl, keptTls);
      const b = await one(httpUrl, keptPlain);
      const c = k % 3 === 0 ? await fresh(httpsUrl, tls) : undefined;
      const d = k % 3 === 0 ? await fresh(httpUrl) : undefined;
      if (k < 20) continue;
      s.kept[0]?.push(a);
      s.kept[1]?.push(b);
      if (c !== undefined && d !== undefined) {
        s.fresh[0]?.push(c);
        s.fresh[1]?.push(d);
      }
    }
  } finally {
    await Promise.all([keptTls.destroy(), keptPlain.destroy()]);
    for (const server of [https, http]) {
      server.closeAllConnections();
      server.close();
    }
  }
  return [
    {
      name: 'edge:tls, per request',
      what: 'a kept-alive request over HTTPS (lab-CA certificate, checked) minus the same over HTTP',
      us: fastRounds(s.kept[0] ?? []) - fastRounds(s.kept[1] ?? []),
    },
    {
      name: 'edge:tls, per new connection',
      what: 'a request on a new HTTPS connection (handshake, certificate check) minus the same over HTTP',
      us: fastRounds(s.fresh[0] ?? []) - fastRounds(s.fresh[1] ?? []),
    },
  ];
}

function readBaseline(): Record<string, number> {
  try {
    const x = JSON.parse(readFileSync(BASELINE, 'utf8')) as { figures?: Record<string, number> };
    return x.figures ?? {};
  } catch {
    return {};
  }
}

async function main(): Promise<void> {
  const args = new Set(process.argv.slice(2));
  const loadBefore = loadavg()[0] ?? 0;
  const figures = [...(await inProcessFigures()), ...(await linkFigures()), ...(await edgeFigures())];
  const loadAfter = loadavg()[0] ?? 0;
  const baseline = readBaseline();
  const reference = figures.find((f) => f.name === REFERENCE)?.us ?? Number.NaN;
  const baselineReference = baseline[REFERENCE];
  const rows = figures.map((f) => {
    const was = baseline[f.name];
    // Both sides in units of the reference of their own run, so a busier machine cancels out.
    const ratio =
      was === undefined || was <= 0 || baselineReference === undefined || f.name === REFERENCE
        ? undefined
        : f.us / reference / (was / baselineReference);
    return { ...f, baselineUs: was, ratio, flagged: ratio !== undefined && ratio > FLAG_RATIO };
  });
  if (args.has('--record')) {
    const out = {
      recorded: new Date().toISOString(),
      node: process.version,
      loadAverage: loadBefore,
      figures: Object.fromEntries(figures.map((f) => [f.name, Number(f.us.toFixed(3))])),
    };
    writeFileSync(BASELINE, `${JSON.stringify(out, null, 2)}\n`);
  }
  if (args.has('--json')) {
    console.log(
      JSON.stringify({ loadAverage: [loadBefore, loadAfter], node: process.version, rows }, null, 2),
    );
  } else {
    console.log(
      `Node ${process.version}, load average ${loadBefore.toFixed(2)} before, ${loadAfter.toFixed(2)} after; µs per request, 10th percentile of ${ROUNDS} interleaved rounds\n`,
    );
    console.log('| defence | µs/request | baseline µs | ÷ baseline, in reference units | what is measured |');
    console.log('| --- | ---: | ---: | ---: | --- |');
    for (const r of rows) {
      const ratio = r.ratio === undefined ? '' : `${r.ratio.toFixed(2)}${r.flagged ? ' **flagged**' : ''}`;
      console.log(
        `| ${r.name} | ${r.us.toFixed(2)} | ${r.baselineUs === undefined ? '' : r.baselineUs.toFixed(2)} | ${ratio} | ${r.what} |`,
      );
    }
    if (args.has('--record')) console.log(`\nbaseline written: ${BASELINE}`);
  }
  if (args.has('--check') && rows.some((r) => r.flagged)) process.exitCode = 1;
}

await main();
