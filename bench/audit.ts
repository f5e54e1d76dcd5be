/**
 * Audit-log appends: the old way (lowdb rewriting the whole `audit.json` under the file lock, as
 * LabStore did up to schema 1) against `AuditLog.append` (hash-chained JSONL, every acknowledged
 * entry fsynced), as the CLI opens it (lock taken per write) and as the security service does
 * (resident: lock held between close writes, chain head in memory); sequentially, into an empty
 * log and into one that already holds 5,000 entries; then CONCURRENT appenders at once, where
 * group commit writes and fsyncs the entries that arrive together as one. Interleaved in one
 * process. Run: `npm run bench:audit`. Environment: AUDIT_BENCH_APPENDS (500), AUDIT_BENCH_CONCURRENT (32).
 */

import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditLog } from '../src/store/audit/audit-log.js';
import { signCheckpoint } from '../src/store/audit/checkpoint.js';
import { appendCheckpoint } from '../src/store/audit/checkpoint-files.js';
import { AuditCheckpointer } from '../src/store/audit/checkpointer.js';
import { JsonFileStore } from '../src/store/json-file-store.js';
import { type AuditData, type AuditEntry, emptyAuditData, validateAuditData } from '../src/store/schema.js';

const APPENDS = Number(process.env.AUDIT_BENCH_APPENDS ?? 500);
const CONCURRENT = Number(process.env.AUDIT_BENCH_CONCURRENT ?? 32);
const PREFILL = [0, 5000];

const entry = (i: number): AuditEntry => ({
  at: new Date().toISOString(),
  actor: '127.0.0.1',
  action: 'auth.verify',
  target: `user-${i % 50}`,
  outcome: 'allowed',
  detail: { jti: 'x'.repeat(22) },
});

async function lowdbRate(dir: string, prefill: number): Promise<number> {
  const store = new JsonFileStore<AuditData>({
    file: join(dir, 'audit.json'),
    initial: emptyAuditData,
    validate: validateAuditData,
  });
  await store.update((d) => {
    for (let i = 0; i < prefill; i++) d.entries.push(entry(i));
  });
  const t = performance.now();
  for (let i = 0; i < APPENDS; i++) await store.update((d) => void d.entries.push(entry(i)));
  return APPENDS / ((performance.now() - t) / 1000);
}

const auditKey = generateKeyPairSync('ed25519').privateKey;

/**
 * entries/s of APPENDS appends, `parallel` at a time; with `checkpoints`, each record is told to a
 * checkpointer as the security service's store does (audit:signed: a signed head every 100
 * records, fsynced to a file of its own), and its last checkpoint at stop is counted in.
 */
async function chainRate(
  file: string,
  prefill: number,
  holdLockMs: number,
  parallel: number,
  checkpoints = false,
): Promise<number> {
  const log = new AuditLog({ file, holdLockMs });
  await Promise.all(Array.from({ length: prefill }, (_, i) => log.append(entry(i))));
  const cp = checkpoints
    ? new AuditCheckpointer({
        privateKey: auditKey,
        checkpointsFile: `${file}.checkpoints`,
        now: Date.now,
        readLog: async () => {
          const records = await log.records();
          return { first: records[0], last: records[records.length - 1] };
        },
      })
    : undefined;
  await cp?.start();
  const append = cp
    ? async (i: number) => cp.observe(await log.append(entry(i)))
    : async (i: number) => void (await log.append(entry(i)));
  const t = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < APPENDS) await append(next++);
    }),
  );
  await cp?.stop();
  const rate = APPENDS / ((performance.now() - t) / 1000);
  if (cp && cp.written.length === 0) throw new Error('no checkpoint was written');
  await log.close();
  if (!(await log.verify()).ok) throw new Error('the chain does not verify');
  return rate;
}

/** One checkpoint: the Ed25519 signature alone (µs), and signature + fsynced append (ms), medians. */
async function checkpointCost(dir: string): Promise<string> {
  const head = { log: 'a'.repeat(64), size: 1, head: 'b'.repeat(64), at: new Date().toISOString() };
  const sign: number[] = [];
  const write: number[] = [];
  for (let i = 0; i < 200; i++) {
    let t = performance.now();
    const c = signCheckpoint({ ...head, size: i + 1 }, auditKey);
    sign.push(performance.now() - t);
    t = performance.now();
    await appendCheckpoint(join(dir, 'cost.jsonl'), c);
    write.push(performance.now() - t);
  }
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[xs.length >> 1] as number;
  return `one checkpoint: sign ${(median(sign) * 1000).toFixed(0)} µs, sign + fsynced append ${median(write).toFixed(2)} ms (medians of 200)`;
}

const load0 = loadavg();
const rows: string[] = [
  '| log already holds | appenders | lowdb audit.json | chained, lock per write | chained, resident writer | resident + signed checkpoints (audit:signed) |',
  '| --- | --- | --- | --- | --- | --- |',
];
for (const prefill of PREFILL) {
  for (const parallel of [1, CONCURRENT]) {
    const dir = await mkdtemp(join(tmpdir(), 'tms-bench-audit-'));
    try {
      const before = parallel === 1 ? `${(await lowdbRate(dir, prefill)).toFixed(0)} entries/s` : '-';
      const perWrite = await chainRate(join(dir, 'a.jsonl'), prefill, 0, parallel);
      const resident = await chainRate(join(dir, 'b.jsonl'), prefill, 200, parallel);
      const signed = await chainRate(join(dir, 'c.jsonl'), prefill, 200, parallel, true);
      rows.push(
        `| ${prefill} entries | ${parallel} | ${before} | ${perWrite.toFixed(0)} entries/s | ${resident.toFixed(0)} entries/s | ${signed.toFixed(0)} entries/s |`,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}
const costDir = await mkdtemp(join(tmpdir(), 'tms-bench-audit-'));
const cost = await checkpointCost(costDir).finally(() => rm(costDir, { recursive: true, force: true }));
console.log(
  `${APPENDS} appends, one process, each acknowledged entry written and fsynced (chained log)\n${rows.join('\n')}\n${cost}\nload average ${load0.map((x) => x.toFixed(2)).join(' ')} at the start, ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')} at the end`,
);
