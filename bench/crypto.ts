/**
 * Micro-benchmark: node-rsa 2 against node:crypto for what trusted-ms does with user keys, run
 * side by side and interleaved (A B A B ...) in one process so that machine drift hits both alike.
 * Prints a Markdown table and writes bench/crypto-results.json. Run: `npm run bench:crypto`.
 */
import {
  constants,
  generateKeyPairSync,
  randomBytes,
  type SignKeyObjectInput,
  sign,
  type VerifyKeyObjectInput,
  verify,
} from 'node:crypto';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import NodeRSA from 'node-rsa';
import { paperDecrypt, paperEncrypt } from '../src/crypto/paper-scheme.js';

const ROUNDS = 7; // samples per library per operation; the median is reported
const BATCH_MS = 200; // time per sample
const MIN_BATCH_OPS = 3;
const KEYGEN_ROUNDS = 8; // key generation is slow: one key per sample

type Lib = 'node:crypto' | 'node-rsa';
interface Contender {
  lib: Lib;
  run: () => void;
}
interface Operation {
  name: string;
  keygen?: boolean;
  contenders: Contender[];
}
interface Result {
  operation: string;
  medians: Partial<Record<Lib, number>>;
  samples: Partial<Record<Lib, number[]>>;
  ratio: number | null;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

/** ops/s of one sample: at least BATCH_MS and MIN_BATCH_OPS calls (one call for key generation). */
function sample(run: () => void, keygen: boolean): number {
  const start = process.hrtime.bigint();
  let ops = 0;
  let elapsed = 0;
  do {
    run();
    ops++;
    elapsed = Number(process.hrtime.bigint() - start) / 1e6;
  } while (!keygen && (elapsed < BATCH_MS || ops < MIN_BATCH_OPS));
  return (ops * 1000) / elapsed;
}

function measure(op: Operation): Result {
  for (const c of op.contenders) c.run(); // warm up (JIT, lazy key caches)
  const rounds = op.keygen ? KEYGEN_ROUNDS : ROUNDS;
  const samples: Partial<Record<Lib, number[]>> = {};
  for (const c of op.contenders) samples[c.lib] = [];
  for (let r = 0; r < rounds; r++) {
    // alternate who goes first so neither always follows the other
    const order = r % 2 === 0 ? op.contenders : [...op.contenders].reverse();
    for (const c of order) samples[c.lib]?.push(sample(c.run, op.keygen === true));
  }
  const medians: Partial<Record<Lib, number>> = {};
  for (const [lib, xs] of Object.entries(samples) as [Lib, number[]][]) medians[lib] = median(xs);
  const a = medians['node:crypto'];
  const b = medians['node-rsa'];
  return { operation: op.name, medians, samples, ratio: a && b ? a / b : null };
}

// ---- fixtures -------------------------------------------------------------------------------

const message = randomBytes(64);
const ticket = randomBytes(32);
const rsaPair = generateKeyPairSync('rsa', { modulusLength: 2048 });
const edPair = generateKeyPairSync('ed25519');
const PSS = { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 } as const;
const signKey: SignKeyObjectInput = { key: rsaPair.privateKey, ...PSS };
const verifyKey: VerifyKeyObjectInput = { key: rsaPair.publicKey, ...PSS };

const nodeRsaOptions = { signingScheme: { scheme: 'pss', hash: 'sha256', saltLength: 32 } } as const;
const rsaPrivate = new NodeRSA(
  rsaPair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  'pkcs8-private-pem',
  nodeRsaOptions,
);
const rsaPublic = new NodeRSA(
  rsaPair.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  'pkcs8-public-pem',
  nodeRsaOptions,
);

const cryptoSig = sign('sha256', message, signKey);
const nodeRsaSig = Buffer.from(rsaPrivate.sign(message));
const edSig = sign(null, message, edPair.privateKey);
const paperData = paperEncrypt(rsaPair.privateKey, ticket);

// Sanity: the two libraries speak the same PSS, so the comparison is like for like.
if (!verify('sha256', message, verifyKey, nodeRsaSig) || !rsaPublic.verify(message, cryptoSig)) {
  throw new Error('node-rsa and node:crypto PSS signatures do not interoperate');
}
if (!paperDecrypt(rsaPair.publicKey, paperEncrypt(rsaPair.privateKey, ticket, 'node-rsa')).equals(ticket)) {
  throw new Error('paper scheme engines do not interoperate');
}

let sink: unknown;
const keep = (x: unknown): void => {
  sink = x;
};
const check = (ok: boolean): void => {
  if (!ok) throw new Error('verification failed during the benchmark');
};

const operations: Operation[] = [
  {
    name: 'RSA-2048 keygen',
    keygen: true,
    contenders: [
      { lib: 'node:crypto', run: () => keep(generateKeyPairSync('rsa', { modulusLength: 2048 })) },
      { lib: 'node-rsa', run: () => keep(new NodeRSA({ b: 2048 })) },
    ],
  },
  {
    name: 'RSA-2048 sign (PSS-SHA256)',
    contenders: [
      { lib: 'node:crypto', run: () => keep(sign('sha256', message, signKey)) },
      { lib: 'node-rsa', run: () => keep(rsaPrivate.sign(message)) },
    ],
  },
  {
    name: 'RSA-2048 verify (PSS-SHA256)',
    contenders: [
      { lib: 'node:crypto', run: () => check(verify('sha256', message, verifyKey, cryptoSig)) },
      { lib: 'node-rsa', run: () => check(rsaPublic.verify(message, nodeRsaSig)) },
    ],
  },
  {
    name: 'paper: RSA-2048 private-encrypt (32 B ticket)',
    contenders: [
      { lib: 'node:crypto', run: () => keep(paperEncrypt(rsaPair.privateKey, ticket, 'node-crypto')) },
      { lib: 'node-rsa', run: () => keep(paperEncrypt(rsaPair.privateKey, ticket, 'node-rsa')) },
    ],
  },
  {
    name: 'paper: RSA-2048 public-decrypt',
    contenders: [
      { lib: 'node:crypto', run: () => keep(paperDecrypt(rsaPair.publicKey, paperData, 'node-crypto')) },
      { lib: 'node-rsa', run: () => keep(paperDecrypt(rsaPair.publicKey, paperData, 'node-rsa')) },
    ],
  },
  {
    name: 'Ed25519 keygen',
    contenders: [{ lib: 'node:crypto', run: () => keep(generateKeyPairSync('ed25519')) }],
  },
  {
    name: 'Ed25519 sign',
    contenders: [{ lib: 'node:crypto', run: () => keep(sign(null, message, edPair.privateKey)) }],
  },
  {
    name: 'Ed25519 verify',
    contenders: [{ lib: 'node:crypto', run: () => check(verify(null, message, edPair.publicKey, edSig)) }],
  },
];

// ---- run and report ---------------------------------------------------------------------------

function fmt(opsPerSec: number | undefined): string {
  if (opsPerSec === undefined) return '-';
  if (opsPerSec >= 100) return Math.round(opsPerSec).toLocaleString('en-US');
  return opsPerSec.toFixed(opsPerSec >= 10 ? 1 : 2);
}

function table(results: Result[]): string {
  const lines = [
    '| operation | node:crypto ops/s | node-rsa ops/s | node:crypto / node-rsa |',
    '| --- | ---: | ---: | ---: |',
  ];
  for (const r of results) {
    const ratio = r.ratio === null ? '-' : `${r.ratio.toFixed(r.ratio >= 10 ? 0 : 2)}x`;
    lines.push(
      `| ${r.operation} | ${fmt(r.medians['node:crypto'])} | ${fmt(r.medians['node-rsa'])} | ${ratio} |`,
    );
  }
  return lines.join('\n');
}

/** The package root: the nearest folder above this script that holds package.json. */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) return process.cwd();
    dir = parent;
  }
  return dir;
}

async function main(): Promise<void> {
  const started = Date.now();
  const results: Result[] = [];
  for (const op of operations) {
    process.stderr.write(`measuring ${op.name} ...\n`);
    results.push(measure(op));
  }
  void sink;
  const cpuList = cpus();
  const machine = {
    cpuModel: cpuList[0]?.model ?? 'unknown',
    cpuCount: cpuList.length,
    node: process.version,
    openssl: process.versions.openssl,
    platform: `${process.platform}-${process.arch}`,
    date: new Date().toISOString(),
  };
  const seconds = (Date.now() - started) / 1000;
  const out = join(packageRoot(), 'bench', 'crypto-results.json');
  await writeFile(
    out,
    `${JSON.stringify(
      {
        machine,
        method: {
          interleaved: true,
          rounds: ROUNDS,
          keygenRounds: KEYGEN_ROUNDS,
          batchMs: BATCH_MS,
          statistic: 'median ops/s over rounds',
          rsaBits: 2048,
          pss: { hash: 'sha256', saltLength: 32 },
          nodeRsa: '2.0.0, encryptionScheme pkcs1 for the paper scheme',
        },
        seconds,
        results,
      },
      null,
      2,
    )}\n`,
  );
  console.log(
    `node-rsa vs node:crypto, ${machine.cpuCount} x ${machine.cpuModel}, Node ${machine.node}, ` +
      `OpenSSL ${machine.openssl}, ${machine.date} (${seconds.toFixed(1)} s)\n`,
  );
  console.log(table(results));
  console.log(`\nwrote ${out}`);
}

await main();
