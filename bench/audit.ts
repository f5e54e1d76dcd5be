/**
 * Audit-log appends, before and after the hash-chained JSONL log: the old way (lowdb rewriting the
 * whole `audit.json` under the file lock, as LabStore did up to schema 1) against `AuditLog.append`,
 * sequentially, into an empty log and into one that already holds 5,000 entries. Interleaved in one
 * process. Run: `npm run bench:audit`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditLog } from '../src/store/audit-log.js';
import { JsonFileStore } from '../src/store/json-file-store.js';
import { type AuditData, type AuditEntry, emptyAuditData, validateAuditData } from '../src/store/schema.js';

const APPENDS = Number(process.env.AUDIT_BENCH_APPENDS ?? 500);
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

async function chainRate(dir: string, prefill: number): Promise<number> {
  const log = new AuditLog({ file: join(dir, 'audit.jsonl') });
  for (let i = 0; i < prefill; i++) await log.append(entry(i));
  const t = performance.now();
  for (let i = 0; i < APPENDS; i++) await log.append(entry(i));
  return APPENDS / ((performance.now() - t) / 1000);
}

const rows: string[] = [
  '| log already holds | lowdb audit.json (before) | chained audit.jsonl (after) | ratio |',
  '| --- | --- | --- | --- |',
];
for (const prefill of PREFILL) {
  const dir = await mkdtemp(join(tmpdir(), 'tms-bench-audit-'));
  try {
    const before = await lowdbRate(dir, prefill);
    const after = await chainRate(dir, prefill);
    rows.push(
      `| ${prefill} entries | ${before.toFixed(0)} entries/s | ${after.toFixed(0)} entries/s | ${(after / before).toFixed(1)}x |`,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
console.log(`${APPENDS} sequential appends, one process, each under the file lock\n${rows.join('\n')}`);
