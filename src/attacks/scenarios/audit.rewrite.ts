import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { isTrustedMsError } from '../../errors.js';
import { writeFileDurably } from '../../fs-sync.js';
import type { SecurityPartConfig } from '../../kernel/part-config.js';
import { homeOfLab } from '../../lab/restart.js';
import { type AuditCheckpoint, checkAgainst } from '../../store/audit/checkpoint.js';
import { auditKeyFilesIn, loadAuditPublicKey, readCheckpoints } from '../../store/audit/checkpoint-files.js';
import { CHECKPOINT_EVERY_MS } from '../../store/audit/checkpointer.js';
import { parseLine } from '../../store/audit/record.js';
import { verifyLines } from '../../store/audit/verify.js';
import { verifyAgainstCheckpoints } from '../../store/audit/verify-checkpoints.js';
import { readStoreBackend } from '../../store/backend.js';
import { AUDIT_FILE } from '../../store/file-lab-store.js';
import { DEFAULT_LOCK_SETTINGS, lockStoreFile } from '../../store/file-lock.js';
import { logText, recomputeChain } from '../audit-rewrite.js';
import type { Scenario, ScenarioContext, Verdict } from '../types.js';

interface Rewrite {
  logFile: string;
  /** the audit folder (out of the home) when the lab signs checkpoints */
  auditDir?: string;
  /** the head the user kept before the attack: the newest signed checkpoint covering the attacker's records */
  kept?: AuditCheckpoint;
  /** the log as it was, restored at revert */
  original?: string;
  /** how many records the forged log had: what was appended after it is kept at revert */
  forgedSize?: number;
  /** records in the log at setup, and how many a kept head had to cover (the attacker's last + 1) */
  atSetup?: number;
  need?: number;
}

const rewriteOf = (ctx: ScenarioContext): Rewrite => ctx.scratch.rewrite as Rewrite;

async function securityConfig(ctx: ScenarioContext): Promise<SecurityPartConfig> {
  const part = ctx.lab.parts.find((p) => p.kind === 'security');
  if (part === undefined) throw new Error('no security service in the lab');
  return JSON.parse(await readFile(part.configFile, 'utf8')) as SecurityPartConfig;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Issue 15 item 6: an attacker who can write the lab home erases its own traces from the audit log
 * and recomputes the whole hash chain, so that `audit verify` alone passes.
 */
export const auditRewrite: Scenario = {
  id: 'audit.rewrite',
  title: 'Erase your own audit records and recompute the hash chain',
  paperAttack: 5,
  technique: 'T1070',
  description:
    "The attacker can write the lab home (a shared volume, a restored backup, a process given the home). It removes every audit record about its own account (the `user.add` and key records of the attacker user) from audit.jsonl and recomputes seq, prev and hash of every record from the genesis, so that the hash chain verifies. The user's defence is the signed head it kept from before the rewrite (`audit checkpoint --out`, here the newest checkpoint the security service signed that covers the attacker's records) and the checkpoints in the audit folder, out of the lab home.",
  evidence:
    'The chain check of the rewritten log (it must pass: the rewrite is the attack) and the check of the log against the signed checkpoints taken before it: succeeded when every check the lab offers passes on the rewritten log, blocked when a checkpoint shows it rewritten or cut (AUDIT_TAMPERED, AUDIT_TRUNCATED).',
  expected: { none: 'succeeded', paper: 'succeeded', trusted: 'blocked' },

  async setup(ctx) {
    const home = homeOfLab(ctx.lab);
    if (readStoreBackend(home).kind !== 'lowdb')
      throw new Error(
        'audit.rewrite rewrites the files of the lab home: this lab keeps its log in PostgreSQL',
      );
    const config = await securityConfig(ctx);
    const rewrite: Rewrite = {
      logFile: join(home, AUDIT_FILE),
      ...(config.auditKeyFile ? { auditDir: dirname(config.auditKeyFile) } : {}),
    };
    ctx.scratch.rewrite = rewrite;
    if (rewrite.auditDir === undefined) return;
    // The user's kept head: the newest checkpoint that covers the attacker's records. The security
    // service signs one at least every CHECKPOINT_EVERY_MS while the log grows.
    const lines = (await readFile(rewrite.logFile, 'utf8')).split('\n').filter(Boolean);
    const mine = lines.map(parseLine).filter((r) => r.target === ctx.attacker.name);
    const need = (mine[mine.length - 1]?.seq ?? 0) + 1;
    rewrite.atSetup = lines.length;
    rewrite.need = need;
    const files = auditKeyFilesIn(rewrite.auditDir);
    const deadline = Date.now() + CHECKPOINT_EVERY_MS + 5000;
    for (;;) {
      const now = (await readFile(rewrite.logFile, 'utf8')).split('\n').filter(Boolean);
      const hashes = now.map((l) => parseLine(l).hash);
      // Only heads of this log as it is now: the user's export before the attack (a head the
      // service signed over a forged log of an earlier run, had its revert raced, is not one).
      const covering = (await readCheckpoints(files.checkpointsFile)).filter(
        (c) => c.size >= need && checkAgainst(hashes, c) === undefined,
      );
      if (covering.length > 0) {
        rewrite.kept = covering[covering.length - 1];
        break;
      }
      if (Date.now() > deadline) break;
      await sleep(250);
    }
  },

  async detonate(ctx) {
    const rewrite = rewriteOf(ctx);
    const files = rewrite.auditDir ? auditKeyFilesIn(rewrite.auditDir) : undefined;
    // Under the log's lock, as a careful attacker would: no append of the security service is lost.
    const lock = await lockStoreFile(rewrite.logFile, DEFAULT_LOCK_SETTINGS);
    let removed = 0;
    try {
      const original = await readFile(rewrite.logFile, 'utf8');
      rewrite.original = original;
      const records = original.split('\n').filter(Boolean).map(parseLine);
      const kept = records.filter((r) => r.target !== ctx.attacker.name);
      removed = records.length - kept.length;
      const forged = recomputeChain(kept);
      rewrite.forgedSize = forged.length;
      await writeFileDurably(rewrite.logFile, logText(forged));
    } finally {
      await lock.release();
    }
    const lines = (await readFile(rewrite.logFile, 'utf8')).split('\n');
    lines.pop();
    const chain = verifyLines(rewrite.logFile, lines);
    ctx.evidence.measurements = {
      removed,
      records: lines.length,
      ...(rewrite.atSetup === undefined ? {} : { atSetup: rewrite.atSetup }),
      ...(rewrite.need === undefined ? {} : { needCovered: rewrite.need }),
      ...(rewrite.kept ? { keptSize: rewrite.kept.size } : {}),
    };
    ctx.evidence.attempts.push({
      action: `remove the attacker's ${removed} audit record(s) and recompute the chain; audit verify (the chain)`,
      target: rewrite.logFile,
      code: chain.ok ? undefined : 'AUDIT_TAMPERED',
      // A step of the attack, not its gain: what the attacker is after is a verify that passes
      // (the next attempt). The report's "got data" is only that.
      gotData: false,
      note: chain.ok
        ? `chain intact, ${chain.entries} entries`
        : `chain broken: ${chain.problems[0]?.message}`,
    });
    if (files === undefined) {
      ctx.evidence.attempts.push({
        action: 'audit verify against signed checkpoints',
        target: rewrite.logFile,
        gotData: true,
        note: 'no audit key and no checkpoints in this lab (audit:chain): nothing to check against',
      });
      return;
    }
    const publicKey = await loadAuditPublicKey(files);
    const records = lines.map(parseLine);
    const checkpoints = [
      ...(await readCheckpoints(files.checkpointsFile)),
      ...(rewrite.kept ? [rewrite.kept] : []),
    ];
    let detected: string | undefined;
    let note: string;
    if (publicKey === undefined || checkpoints.length === 0) {
      note = 'no signed checkpoint to check against';
    } else {
      try {
        const r = verifyAgainstCheckpoints(records, checkpoints, publicKey);
        const p = r.problems[0];
        detected = p ? (p.kind === 'truncated' ? 'AUDIT_TRUNCATED' : 'AUDIT_TAMPERED') : undefined;
        note = p ? p.message : `extends all ${r.checked} checkpoints`;
      } catch (err) {
        detected = isTrustedMsError(err) ? err.code : 'ERROR';
        note = (err as Error).message;
      }
    }
    ctx.evidence.attempts.push({
      action: `audit verify against the ${checkpoints.length} signed checkpoint(s), the user's kept head of ${rewrite.kept?.size ?? '-'} entries among them`,
      target: files.checkpointsFile,
      ...(detected ? { code: detected } : {}),
      gotData: detected === undefined,
      note,
    });
  },

  judge(ctx): Verdict {
    const [rewrite, check] = ctx.evidence.attempts;
    // A rewrite that broke the chain, or found nothing to remove, says nothing about the checkpoints.
    if (
      rewrite === undefined ||
      rewrite.code !== undefined ||
      (ctx.evidence.measurements?.removed ?? 0) === 0
    ) {
      ctx.evidence.inconclusive = `the rewrite itself did not hold: ${rewrite?.note ?? 'not done'}`;
      return 'inconclusive';
    }
    return check?.gotData ? 'succeeded' : 'blocked';
  },

  async revert(ctx) {
    const rewrite = ctx.scratch.rewrite as Rewrite | undefined;
    if (rewrite?.original === undefined || rewrite.forgedSize === undefined) return;
    const lock = await lockStoreFile(rewrite.logFile, DEFAULT_LOCK_SETTINGS);
    let appendedToForged = 0;
    try {
      // The original history, and what the lab appended to the forged one since, chained onto it.
      const now = (await readFile(rewrite.logFile, 'utf8')).split('\n').filter(Boolean).map(parseLine);
      const original = rewrite.original.split('\n').filter(Boolean).map(parseLine);
      const since = now.slice(rewrite.forgedSize);
      appendedToForged = since.length;
      await writeFileDurably(rewrite.logFile, logText(recomputeChain([...original, ...since])));
    } finally {
      await lock.release();
    }
    if (rewrite.auditDir === undefined) return;
    // Heads the security service signed over the forged log would fail every later verify: only
    // those the restored log extends stay. When it appended to the forged log, it may still hold
    // a forged head in memory and sign it later: first wait (at most one interval and a bit) for
    // a head of the restored log, which shows it has moved on.
    const file = auditKeyFilesIn(rewrite.auditDir).checkpointsFile;
    const restored = (await readFile(rewrite.logFile, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => parseLine(l).hash);
    const deadline = Date.now() + (appendedToForged > 0 ? CHECKPOINT_EVERY_MS + 5000 : 0);
    while (
      Date.now() < deadline &&
      !(await readCheckpoints(file)).some(
        (c) => c.size >= restored.length && checkAgainst(restored, c) === undefined,
      )
    )
      await sleep(250);
    const hashes = (await readFile(rewrite.logFile, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => parseLine(l).hash);
    const good = (await readCheckpoints(file)).filter((c) => checkAgainst(hashes, c) === undefined);
    await writeFileDurably(file, good.map((c) => `${JSON.stringify(c)}\n`).join(''));
  },
};
