/**
 * Micro-benchmark of the trusted posture's per-request and per-login costs: ticket verification
 * cold (Ed25519 signature) and cached (a Map lookup), proof creation and verification (one HMAC, one
 * SHA-256 of the body), opening a sealed session key, the key exchange, issuing a ticket. Prints
 * ops/s (median of several samples) as a Markdown table. Run: `tsc -p tsconfig.build.json && node
 * dist/bench/protocol.js`. Numbers only: nothing here asserts a timing.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { cpus } from 'node:os';
import { createProof, ProofVerifier } from '../src/protocol/proof.js';
import {
  deriveSessionKey,
  newExchangeKeyPair,
  openSessionKey,
  sealSessionKey,
} from '../src/protocol/session-key.js';
import { issueTicket, type TicketClaims, TicketVerifier } from '../src/protocol/ticket.js';

const ROUNDS = 7;
const BATCH_MS = 200;

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

/** ops/s, median of ROUNDS samples of at least BATCH_MS each. `run(i)` gets a running call index. */
function measure(run: (i: number) => void): number {
  let i = 0;
  for (let w = 0; w < 200; w++) run(i++); // warm up
  const samples: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const start = process.hrtime.bigint();
    let ops = 0;
    let elapsed = 0;
    do {
      for (let k = 0; k < 50; k++) run(i++);
      ops += 50;
      elapsed = Number(process.hrtime.bigint() - start) / 1e6;
    } while (elapsed < BATCH_MS);
    samples.push((ops * 1000) / elapsed);
  }
  return median(samples);
}

// ---- fixtures -------------------------------------------------------------------------------

const service = generateKeyPairSync('ed25519');
const keys = new Map([['security-1', service.publicKey]]);
const sealKey = randomBytes(32);
const sessionKey = randomBytes(32);
const nowS = Math.floor(Date.now() / 1000);
const jti = randomBytes(16).toString('base64url');
const claims: TicketClaims = {
  v: 1,
  iss: 'trusted-ms://lab-bench/security',
  aud: 'trusted-ms://lab-bench',
  sub: 'alice',
  role: 'analyst',
  perms: { orders: ['query', 'read'], reports: ['read'], customers: ['read'] },
  iat: nowS,
  exp: nowS + 3600,
  jti,
  posture: 'trusted',
  cnf: { jkt: randomBytes(32).toString('base64url'), sk: sealSessionKey(sealKey, sessionKey, jti) },
};
const key = { kid: 'security-1', privateKey: service.privateKey };
const token = issueTicket(key, claims);
const verifierOpts = { keys, issuer: claims.iss, audience: claims.aud };
const cold = new TicketVerifier({ ...verifierOpts, maxEntries: 0 }); // never caches: always the signature
const warm = new TicketVerifier(verifierOpts);
warm.verify(token);

const body = Buffer.from(JSON.stringify({ item: 'book', qty: 1, note: 'x'.repeat(200) }));
const request = { sessionKey, method: 'POST', path: '/svc/orders/v1/orders?limit=10', body, jti };
// Proofs made up front, so that proof verify measures the check alone (each is new to the verifier).
const PROOFS = 400_000;
const proofs = Array.from({ length: PROOFS }, () => createProof(request));
const proofVerifier = new ProofVerifier({ maxEntries: PROOFS + 1 });
const client = newExchangeKeyPair();
const sealed = claims.cnf!.sk;

let sink: unknown;
const keep = (x: unknown): void => {
  sink = x;
};

const operations: [string, (i: number) => void][] = [
  ['ticket verify, cold (Ed25519 signature)', () => keep(cold.verify(token))],
  ['ticket verify, cached (Map lookup)', () => keep(warm.verify(token))],
  ['proof create (HMAC + SHA-256 of body)', () => keep(createProof(request))],
  [
    'proof verify (HMAC + SHA-256 + replay Map)',
    (i) => {
      if (i >= PROOFS) throw new Error('bench ran out of proofs: raise PROOFS');
      proofVerifier.verify({ ...request, header: proofs[i]! });
    },
  ],
  ['open sealed session key (AES-256-GCM)', () => keep(openSessionKey(sealKey, sealed, jti))],
  ['ticket issue (Ed25519 sign)', () => keep(issueTicket(key, claims))],
  [
    'session key exchange (X25519 keygen + derive)',
    () => keep(deriveSessionKey(newExchangeKeyPair().privateKey, client.publicKeyRaw, jti)),
  ],
];

console.log(`# trusted-ms protocol micro-benchmark`);
console.log(`node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'})`);
console.log(`ticket: ${token.length} characters; proof header: ${proofs[0]!.length} characters\n`);
console.log('| operation | ops/s | µs/op |');
console.log('| --- | ---: | ---: |');
for (const [name, run] of operations) {
  const ops = measure(run);
  console.log(`| ${name} | ${Math.round(ops).toLocaleString('en-US')} | ${(1e6 / ops).toFixed(2)} |`);
}
void sink;
