import type { KeyObject } from 'node:crypto';
import {
  type AuditCheckpoint,
  type CheckpointProblem,
  checkAgainst,
  invalidCheckpoint,
  parseCheckpoint,
  verifyCheckpointSignature,
} from './checkpoint.js';
import { type AuditKeyFiles, loadAuditPublicKey, readCheckpoints } from './checkpoint-files.js';
import type { AuditRecord } from './record.js';

/**
 * The log against signed checkpoints: each checkpoint's signature with the audit public key, then
 * whether the log still extends the head it signed. A checkpoint whose signature fails throws
 * (AUDIT_CHECKPOINT_INVALID): it proves nothing, and it should not be there.
 */
export interface CheckpointVerifyResult {
  /** how many checkpoints were checked */
  checked: number;
  /** the newest one checked (largest size) */
  latest?: AuditCheckpoint;
  problems: CheckpointProblem[];
}

export function verifyAgainstCheckpoints(
  records: readonly Pick<AuditRecord, 'hash'>[],
  checkpoints: readonly AuditCheckpoint[],
  publicKey: KeyObject,
): CheckpointVerifyResult {
  const hashes = records.map((r) => r.hash);
  const result: CheckpointVerifyResult = { checked: 0, problems: [] };
  for (const c of checkpoints) {
    verifyCheckpointSignature(c, publicKey);
    result.checked++;
    if (result.latest === undefined || c.size >= result.latest.size) result.latest = c;
    const problem = checkAgainst(hashes, c);
    if (problem) result.problems.push(problem);
  }
  return result;
}

/**
 * What `audit verify` does beyond the chain: the home's signed checkpoints (from its audit folder,
 * out of the lab home) and any checkpoint the user kept (`--checkpoint FILE`), against the log's
 * records. `undefined` when there is nothing to check against (no audit key for this home, no
 * file given).
 */
export async function verifyLabCheckpoints(
  records: () => Promise<readonly Pick<AuditRecord, 'hash'>[]>,
  files: AuditKeyFiles,
  given?: { file: string; text: string },
): Promise<
  (CheckpointVerifyResult & { keyFile: string; checkpointsFile: string; given?: string }) | undefined
> {
  const publicKey = await loadAuditPublicKey(files);
  if (publicKey === undefined) {
    // Checkpoints without their key: the key was removed (the red team's A9), not a lab that ran
    // without audit:signed. Passing on the chain alone would pass a rewritten log.
    if ((await readCheckpoints(files.checkpointsFile)).length > 0)
      throw invalidCheckpoint(
        `${files.checkpointsFile} holds signed checkpoints, but their key ${files.publicFile} is gone`,
        ['restore the key folder the lab ran with (a backup of --key-dir or TRUSTED_MS_KEYS)'],
      );
    if (given === undefined) return undefined;
    throw invalidCheckpoint(
      `no audit key for this lab home at ${files.publicFile}: its signature cannot be checked`,
      ['give the key folder the lab ran with: --key-dir or TRUSTED_MS_KEYS'],
    );
  }
  const checkpoints = await readCheckpoints(files.checkpointsFile);
  if (given) {
    let c: AuditCheckpoint;
    try {
      c = parseCheckpoint(given.text);
    } catch (err) {
      throw invalidCheckpoint(
        `${given.file}: ${(err as Error).message.replace(/^audit checkpoint refused: /, '')}`,
      );
    }
    checkpoints.push(c);
  }
  const result = verifyAgainstCheckpoints(await records(), checkpoints, publicKey);
  return {
    ...result,
    keyFile: files.publicFile,
    checkpointsFile: files.checkpointsFile,
    ...(given ? { given: given.file } : {}),
  };
}
