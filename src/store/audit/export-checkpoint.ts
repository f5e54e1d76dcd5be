import { writeFile } from 'node:fs/promises';
import { fileError } from '../../disk-errors.js';
import { TrustedMsError } from '../../errors.js';
import { type AuditCheckpoint, verifyCheckpointSignature } from './checkpoint.js';
import { auditKeyFiles, loadAuditPublicKey, readCheckpoints } from './checkpoint-files.js';

export interface ExportedCheckpoint {
  checkpoint: AuditCheckpoint;
  /** where it was written (`--out`) */
  file?: string;
  /** the public key its signature was checked with */
  keyFile: string;
}

/** The home's latest signed checkpoint, its signature checked, written to `out` when given. */
export async function exportCheckpoint(
  home: string,
  keyDir: string,
  out?: string,
): Promise<ExportedCheckpoint> {
  const files = auditKeyFiles(keyDir, home);
  const publicKey = await loadAuditPublicKey(files);
  const all = publicKey ? await readCheckpoints(files.checkpointsFile) : [];
  const latest = all.reduce<AuditCheckpoint | undefined>((a, c) => (a && a.size > c.size ? a : c), undefined);
  if (publicKey === undefined || latest === undefined) {
    throw new TrustedMsError(
      'AUDIT_CHECKPOINT_MISSING',
      publicKey === undefined
        ? `no audit key for the lab home ${home} in ${keyDir}: its lab ran without audit:signed, or with another key folder`
        : `no signed checkpoint yet in ${files.checkpointsFile}`,
      { actions: ['run the lab with audit:signed (trusted), or give the key folder it used: --key-dir'] },
    );
  }
  verifyCheckpointSignature(latest, publicKey);
  if (out !== undefined) {
    await writeFile(out, `${JSON.stringify(latest, null, 2)}\n`, { mode: 0o600 }).catch((err: unknown) => {
      throw fileError(out, 'write', err);
    });
  }
  return { checkpoint: latest, ...(out === undefined ? {} : { file: out }), keyFile: files.publicFile };
}
