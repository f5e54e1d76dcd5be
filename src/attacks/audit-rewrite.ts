import { AUDIT_GENESIS, type AuditRecord, recordHash } from '../store/audit/record.js';

/**
 * What an attacker who can write the lab home does to the audit log (audit.rewrite): drops the
 * records it wants gone, and/or puts them in another order, then recomputes seq, prev and hash of
 * every record from the genesis, so that the chain alone verifies. Ids and contents are kept.
 */
export function recomputeChain(records: readonly AuditRecord[]): AuditRecord[] {
  let prev = AUDIT_GENESIS;
  return records.map((r, seq) => {
    const { hash: _old, ...rest } = r;
    const base = { ...rest, seq, prev };
    const hash = recordHash(base);
    prev = hash;
    return { ...base, hash };
  });
}

/** The log's text as the file holds it: one JSON line per record. */
export function logText(records: readonly AuditRecord[]): string {
  return records.map((r) => `${JSON.stringify(r)}\n`).join('');
}
