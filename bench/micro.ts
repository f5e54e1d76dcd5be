/**
 * The micro-figures of `npm run bench`, each measured in this process with the functions the lab
 * runs: the login's parts (password hash, signature verify, ticket issue) and the gateway's
 * per-request check (ticket, session key, proof). Medians of many single operations.
 */
import { execFile } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Client } from 'undici';
import { login } from '../src/client/login.js';
import { paperEncrypt, paperVerify } from '../src/crypto/paper-scheme.js';
import { hashPassword, verifyPassword } from '../src/crypto/password.js';
import type { LabState } from '../src/kernel/lab-state.js';
import type { VirtualUser } from '../src/load/users.js';
import { newChallenge, signChallenge, verifyChallengeSignature } from '../src/protocol/challenge.js';
import { createProof, ProofVerifier } from '../src/protocol/proof.js';
import {
  deriveSessionKey,
  newExchangeKeyPair,
  openSessionKey,
  sealSessionKey,
} from '../src/protocol/session-key.js';
import { issueTicket, type TicketClaims, TicketVerifier } from '../src/protocol/ticket.js';

export const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length === 0
    ? 0
    : s.length % 2
      ? (s[mid] as number)
      : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};

/** Median time of one call in ms, over `n` calls after `warm` unmeasured ones. */
async function timeEach(n: number, fn: (i: number) => unknown, warm = Math.min(50, n)): Promise<number> {
  for (let i = 0; i < warm; i++) await fn(i);
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn(warm + i);
    xs.push(performance.now() - t0);
  }
  return median(xs);
}

/** Median per-operation time in µs of batches of `batch` calls (single calls are below the timer's grain). */
function timeBatched(rounds: number, batch: number, fn: (i: number) => unknown): number {
  let i = 0;
  for (let w = 0; w < batch; w++) fn(i++);
  const xs: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    for (let k = 0; k < batch; k++) fn(i++);
    xs.push(((performance.now() - t0) * 1000) / batch);
  }
  return median(xs);
}

export interface MicroFigures {
  login: {
    passwordHashMs: number;
    signatureVerifyUs: { ed25519: number; rsaPss2048: number; paperRsa2048: number };
    ticketIssueUs: number;
    sessionKeyExchangeUs: number;
  };
  gateway: {
    /** trusted, per request: cached ticket + cached session key + proof check (HMAC, SHA-256, replay map) */
    perRequestUs: number;
    ticketVerifyCachedUs: number;
    ticketVerifyColdUs: number;
    proofVerifyUs: number;
  };
}

export async function microFigures(): Promise<MicroFigures> {
  const stored = await hashPassword('correct horse battery staple');
  const passwordHashMs = await timeEach(15, () => verifyPassword('correct horse battery staple', stored), 2);

  const ed = generateKeyPairSync('ed25519');
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const issuer = 'trusted-ms://lab-bench/security';
  const exchange = newExchangeKeyPair();
  const challenge = newChallenge('alice', issuer, exchange.publicKeyRaw, 60, Date.now);
  const edSig = signChallenge(ed.privateKey, challenge);
  const rsaSig = signChallenge(rsa.privateKey, challenge);
  const paperTicket = randomBytes(32);
  const paperSig = paperEncrypt(rsa.privateKey, paperTicket);
  const verifyOpts = { expectedAudience: issuer, expectedUser: 'alice' };
  const ed25519 = timeBatched(9, 100, () =>
    verifyChallengeSignature(ed.publicKey, challenge, edSig, verifyOpts),
  );
  const rsaPss2048 = timeBatched(9, 100, () =>
    verifyChallengeSignature(rsa.publicKey, challenge, rsaSig, verifyOpts),
  );
  const paperRsa2048 = timeBatched(9, 100, () => paperVerify(rsa.publicKey, paperSig, paperTicket));

  const signing = { kid: 'bench', privateKey: ed.privateKey };
  const sealKey = randomBytes(32);
  const sessionKey = randomBytes(32);
  const nowS = Math.floor(Date.now() / 1000);
  const jti = randomBytes(16).toString('base64url');
  const claims: TicketClaims = {
    v: 1,
    iss: issuer,
    aud: 'trusted-ms://lab-bench',
    sub: 'alice',
    role: 'analyst',
    perms: { orders: ['query', 'read'], catalog: ['read'] },
    iat: nowS,
    exp: nowS + 3600,
    jti,
    posture: 'trusted',
    cnf: { jkt: randomBytes(32).toString('base64url'), sk: sealSessionKey(sealKey, sessionKey, jti) },
  };
  const ticketIssueUs = timeBatched(9, 100, () => issueTicket(signing, claims));
  const sessionKeyExchangeUs = timeBatched(9, 100, () =>
    deriveSessionKey(newExchangeKeyPair().privateKey, exchange.publicKeyRaw, jti),
  );

  const token = issueTicket(signing, claims);
  const verifierOpts = { keys: new Map([['bench', ed.publicKey]]), issuer, audience: claims.aud };
  const cold = new TicketVerifier({ ...verifierOpts, maxEntries: 0 });
  const warm = new TicketVerifier(verifierOpts);
  const ticketVerifyColdUs = timeBatched(9, 100, () => cold.verify(token));
  const ticketVerifyCachedUs = timeBatched(9, 5000, () => warm.verify(token));
  const path = '/svc/orders/db/orders/records/ord-1';
  const n = 9 * 2000 + 2000;
  const proofs = Array.from({ length: 2 * n }, () => createProof({ sessionKey, method: 'GET', path, jti }));
  const proofVerifier = new ProofVerifier({ maxEntries: 4 * n });
  const proofVerifyUs = timeBatched(9, 2000, (i) =>
    proofVerifier.verify({ header: proofs[i], sessionKey, method: 'GET', path, jti }),
  );
  // What the gateway does per trusted request (app.ts): the cached ticket, the session key opened
  // once per ticket (cached), the proof.
  const keys = new WeakMap<TicketClaims, Buffer>();
  const perRequestUs = timeBatched(9, 2000, (i) => {
    const c = warm.verify(token);
    let k = keys.get(c);
    if (k === undefined) {
      k = openSessionKey(sealKey, c.cnf?.sk ?? '', c.jti);
      keys.set(c, k);
    }
    proofVerifier.verify({ header: proofs[n + i], sessionKey: k, method: 'GET', path, jti: c.jti });
  });
  return {
    login: {
      passwordHashMs,
      signatureVerifyUs: { ed25519, rsaPss2048, paperRsa2048 },
      ticketIssueUs,
      sessionKeyExchangeUs,
    },
    gateway: { perRequestUs, ticketVerifyCachedUs, ticketVerifyColdUs, proofVerifyUs },
  };
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Median wall time of `trusted-ms <args>` in a new process, after one run that warms the file cache. */
export async function cliColdStartMs(args: readonly string[], runs: number): Promise<number> {
  const run = promisify(execFile);
  const xs: number[] = [];
  for (let i = 0; i < runs + 1; i++) {
    const t0 = performance.now();
    await run(process.execPath, [join(root, 'bin', 'run.js'), ...args]);
    if (i > 0) xs.push(performance.now() - t0);
  }
  return median(xs);
}

/** Sequential logins of one user on an idle lab: the handshake's latency without queueing. */
export async function sequentialLoginMs(
  lab: LabState,
  user: VirtualUser,
  client: Client | undefined,
  n: number,
): Promise<{ loginMs: number; withoutHashMs: number; hashMs: number; verifyStepMs: number }> {
  const stored = await hashPassword('bench password');
  const xs: number[] = [];
  const hashes: number[] = [];
  const diffs: number[] = [];
  const verifySteps: number[] = [];
  for (let i = 0; i < n; i++) {
    // One password hash (the same scrypt the security service runs) next to each login, so the
    // hash is subtracted at the machine's load of that moment, not of another part of the run.
    const h0 = performance.now();
    await verifyPassword('bench password', stored);
    const hash = performance.now() - h0;
    const t0 = performance.now();
    const { timings } = await login(lab, user.name, user.password, user.privateKey, client);
    const ms = performance.now() - t0;
    verifySteps.push(timings.verifyMs);
    xs.push(ms);
    hashes.push(hash);
    diffs.push(ms - hash);
  }
  return {
    loginMs: median(xs),
    withoutHashMs: median(diffs),
    hashMs: median(hashes),
    verifyStepMs: median(verifySteps),
  };
}
