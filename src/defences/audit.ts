import type { Defences } from './presets.js';

/**
 * The `audit` defence. `chain`: the hash chain alone, which shows an edited, removed or reordered
 * record, but not a rewrite whose hashes were all recomputed, nor a cut-off tail, by whoever can
 * write the lab home. `signed`: the security service also signs checkpoints of the log's head with
 * an audit key kept in the user's key folder, out of the lab home (src/store/audit/), and
 * `audit verify` checks the log against them.
 */
export function signsAuditCheckpoints(d: Pick<Defences, 'audit'>): boolean {
  return d.audit === 'signed';
}
