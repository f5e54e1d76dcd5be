import { generateKeyPairSync } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { logText, recomputeChain } from '../../../src/attacks/audit-rewrite.js';
import { AuditLog } from '../../../src/store/audit/audit-log.js';
import {
  type AuditCheckpoint,
  checkAgainst,
  parseCheckpoint,
  signCheckpoint,
  verifyCheckpointSignature,
} from '../../../src/store/audit/checkpoint.js';
import { auditKeyFiles, ensureAuditKey, readCheckpoints } from '../../../src/store/audit/checkpoint-files.js';
import { AuditCheckpointer } from '../../../src/store/audit/checkpointer.js';
import type { AuditRecord } from '../../../src/store/audit/record.js';
import { verifyLabCheckpoints } from '../../../src/store/audit/verify-checkpoints.js';

let dir: string;
let file: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tms-ckpt-'));
  file = join(dir, 'audit.jsonl');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const { privateKey, publicKey } = generateKeyPairSync('ed25519');

async function writeLog(n: number): Promise<AuditLog> {
  const log = new AuditLog({ file });
  for (let i = 0; i < n; i++) {
    await log.append({
      at: `t${i}`,
      actor: i === 3 ? 'attacker' : 'cli',
      action: `test.${i}`,
      outcome: 'ok',
    });
  }
  return log;
}

function headOf(records: AuditRecord[], size = records.length): AuditCheckpoint {
  return signCheckpoint(
    {
      log: (records[0] as AuditRecord).hash,
      size,
      head: (records[size - 1] as AuditRecord).hash,
      at: '2026-12-07T12:00:00.000Z',
    },
    privateKey,
  );
}

describe('signed audit checkpoints', () => {
  it('a checkpoint signs and verifies, and the log extends it as it grows', async () => {
    const log = await writeLog(5);
    const c = headOf(await log.records());
    verifyCheckpointSignature(c, publicKey);
    await log.append({ at: 't5', actor: 'cli', action: 'test.5', outcome: 'ok' });
    expect(
      checkAgainst(
        (await log.records()).map((r) => r.hash),
        c,
      ),
    ).toBeUndefined();
  });

  it('a rewrite that removes an entry and recomputes the chain passes the chain but not the checkpoint', async () => {
    const log = await writeLog(6);
    const records = await log.records();
    const c = headOf(records);
    const rewritten = recomputeChain(records.filter((r) => r.actor !== 'attacker'));
    await writeFile(file, logText(rewritten));
    // The chain alone is fooled: that is the attack.
    expect((await log.verify()).ok).toBe(true);
    const problem = checkAgainst(
      rewritten.map((r) => r.hash),
      c,
    );
    expect(problem?.kind).toBe('truncated');
    // ... and when the attacker pads the log back to its length, the head still differs.
    const padded = recomputeChain([
      ...records.filter((r) => r.actor !== 'attacker'),
      records[5] as AuditRecord,
    ]);
    expect(
      checkAgainst(
        padded.map((r) => r.hash),
        c,
      )?.kind,
    ).toBe('rewritten');
  });

  it('an edited entry with a recomputed chain is rewritten relative to an earlier head', async () => {
    const log = await writeLog(5);
    const records = await log.records();
    const c = headOf(records);
    const edited = recomputeChain(records.map((r, i) => (i === 2 ? { ...r, outcome: 'denied' } : r)));
    expect(
      checkAgainst(
        edited.map((r) => r.hash),
        c,
      )?.kind,
    ).toBe('rewritten');
  });

  it('reordering with a recomputed chain is detected; a checkpoint before the change still passes', async () => {
    const log = await writeLog(6);
    const records = await log.records();
    const early = headOf(records, 2);
    const late = headOf(records);
    const swapped = [...records];
    [swapped[3], swapped[4]] = [swapped[4] as AuditRecord, swapped[3] as AuditRecord];
    const hashes = recomputeChain(swapped).map((r) => r.hash);
    expect(checkAgainst(hashes, late)?.kind).toBe('rewritten');
    expect(checkAgainst(hashes, early)).toBeUndefined();
  });

  it('a cut-off tail is truncated; a log rewritten from record 0 is caught by the log id', async () => {
    const log = await writeLog(5);
    const records = await log.records();
    const c = headOf(records);
    expect(
      checkAgainst(
        records.slice(0, 3).map((r) => r.hash),
        c,
      )?.kind,
    ).toBe('truncated');
    const fromStart = recomputeChain([{ ...(records[0] as AuditRecord), actor: 'x' }, ...records.slice(1)]);
    expect(
      checkAgainst(
        fromStart.map((r) => r.hash),
        c,
      )?.kind,
    ).toBe('rewritten');
  });

  it('a checkpoint edited, or signed by another key, is AUDIT_CHECKPOINT_INVALID', async () => {
    const log = await writeLog(3);
    const c = headOf(await log.records());
    expect(() => verifyCheckpointSignature({ ...c, size: 2 }, publicKey)).toThrow(
      expect.objectContaining({ code: 'AUDIT_CHECKPOINT_INVALID' }),
    );
    const other = generateKeyPairSync('ed25519');
    const forged = signCheckpoint({ log: c.log, size: 1, head: c.log, at: c.at }, other.privateKey);
    expect(() => verifyCheckpointSignature(forged, publicKey)).toThrow(
      expect.objectContaining({ code: 'AUDIT_CHECKPOINT_INVALID' }),
    );
    for (const bad of ['', 'nope', '[]', '{"v":1}', JSON.stringify({ ...c, size: -1 })]) {
      expect(() => parseCheckpoint(bad)).toThrow(
        expect.objectContaining({ code: 'AUDIT_CHECKPOINT_INVALID' }),
      );
    }
    // what `audit checkpoint --json` printed is accepted as well as the bare object
    expect(parseCheckpoint(JSON.stringify({ status: 0, result: { checkpoint: c } }))).toEqual(c);
    expect(parseCheckpoint(JSON.stringify({ checkpoint: c }))).toEqual(c);
  });

  it('the checkpointer signs every N entries and at stop, into a 0600 file; verifyLabCheckpoints uses it', async () => {
    const files = auditKeyFiles(join(dir, 'keys'), join(dir, 'home'));
    await ensureAuditKey(files);
    expect((await stat(files.privateFile)).mode & 0o777).toBe(0o600);
    const log = new AuditLog({ file });
    const cp = new AuditCheckpointer({
      privateKey: (await import('node:crypto')).createPrivateKey(await readFile(files.privateFile, 'utf8')),
      checkpointsFile: files.checkpointsFile,
      now: () => Date.parse('2026-12-07T12:00:00Z'),
      readLog: async () => ({ first: undefined, last: undefined }),
      everyEntries: 4,
      everyMs: 60_000,
    });
    await cp.start();
    for (let i = 0; i < 10; i++)
      cp.observe(await log.append({ at: `t${i}`, actor: 'cli', action: 'a', outcome: 'ok' }));
    await cp.stop();
    const written = await readCheckpoints(files.checkpointsFile);
    expect(written.map((c) => c.size)).toEqual([4, 8, 10]);
    expect((await stat(files.checkpointsFile)).mode & 0o777).toBe(0o600);
    const ok = await verifyLabCheckpoints(() => log.records(), files);
    expect(ok?.problems).toEqual([]);
    expect(ok?.checked).toBe(3);
    // the attacker's rewrite: drop record 5, recompute
    const records = await log.records();
    await writeFile(file, logText(recomputeChain(records.filter((r) => r.seq !== 5))));
    const after = await verifyLabCheckpoints(() => log.records(), files);
    expect(after?.problems.map((p) => p.kind)).toEqual(['rewritten', 'truncated']);
    // a checkpoint file of the user's: the same check, and a forged one is refused
    const given = { file: 'kept.json', text: JSON.stringify(written[0]) };
    await expect(verifyLabCheckpoints(() => log.records(), files, given)).resolves.toBeDefined();
    const other = generateKeyPairSync('ed25519');
    const forged = signCheckpoint(
      { log: records[0]?.hash ?? '', size: 1, head: records[0]?.hash ?? '', at: 'x' },
      other.privateKey,
    );
    await expect(
      verifyLabCheckpoints(() => log.records(), files, { file: 'f.json', text: JSON.stringify(forged) }),
    ).rejects.toMatchObject({ code: 'AUDIT_CHECKPOINT_INVALID' });
    // no audit key for a home: nothing to check, unless a checkpoint is given
    const none = auditKeyFiles(join(dir, 'keys'), join(dir, 'other-home'));
    await expect(verifyLabCheckpoints(() => log.records(), none)).resolves.toBeUndefined();
    await expect(verifyLabCheckpoints(() => log.records(), none, given)).rejects.toMatchObject({
      code: 'AUDIT_CHECKPOINT_INVALID',
    });
    // the home named through a symlink is the same home (red team A10: it passed on the chain alone)
    await mkdir(join(dir, 'home'), { recursive: true });
    await symlink(join(dir, 'home'), join(dir, 'home-link'));
    expect(auditKeyFiles(join(dir, 'keys'), join(dir, 'home-link'))).toEqual(files);
    // checkpoints whose key was removed are not "no key for this home" (red team A9)
    await rm(files.publicFile);
    await expect(verifyLabCheckpoints(() => log.records(), files)).rejects.toMatchObject({
      code: 'AUDIT_CHECKPOINT_INVALID',
    });
  });
});
