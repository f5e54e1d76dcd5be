import { AUDIT_GENESIS, type AuditRecord, parseLine, recordHash } from './record.js';

/**
 * Walking the chain: every record that breaks it is reported, by index and id, with what the break
 * says happened. What the chain cannot show by itself: records cut off at the end (the tail is
 * still a valid chain); hence the head hash and count, to be kept elsewhere.
 */

export type AuditProblemKind = 'malformed' | 'edited' | 'removed' | 'reordered' | 'chain-broken';

export interface AuditProblem {
  index: number;
  /** The record's id when the line could be read. */
  id?: string;
  kind: AuditProblemKind;
  message: string;
}

export interface AuditVerifyResult {
  ok: boolean;
  file: string;
  entries: number;
  /** The last record's hash (keep it somewhere else to detect a cut-off tail later). */
  head: string;
  problems: AuditProblem[];
  /** Entries still in the legacy `audit.json`, not chained yet (they are chained on the next write). */
  legacyEntries?: number;
}

/** An empty log's result: no entries, the genesis as head. */
export function emptyVerifyResult(file: string): AuditVerifyResult {
  return { ok: true, file, entries: 0, head: AUDIT_GENESIS, problems: [] };
}

/** Checks the lines of the log `file` as one chain from the genesis. */
export function verifyLines(file: string, lines: readonly string[]): AuditVerifyResult {
  const result = emptyVerifyResult(file);
  result.entries = lines.length;
  let prevHash = AUDIT_GENESIS;
  let expectedSeq = 0;
  for (const [index, line] of lines.entries()) {
    let record: AuditRecord;
    try {
      record = parseLine(line);
    } catch (err) {
      const id = idOf(line);
      result.problems.push({
        index,
        ...(id === undefined ? {} : { id }),
        kind: 'malformed',
        message: `record ${index} cannot be read: ${(err as Error).message}`,
      });
      // The chain cannot be followed through an unreadable record: pick it up again after it.
      prevHash = '';
      expectedSeq = index + 1;
      continue;
    }
    const own = recordHash(record);
    if (own !== record.hash) {
      result.problems.push({
        index,
        id: record.id,
        kind: 'edited',
        message: `record ${index} (${record.id}) was changed after it was written: its hash does not match its content`,
      });
    } else if (record.seq !== expectedSeq) {
      const kind = record.seq > expectedSeq ? 'removed' : 'reordered';
      result.problems.push({
        index,
        id: record.id,
        kind,
        message:
          kind === 'removed'
            ? `record ${index} (${record.id}) has seq ${record.seq}: ${record.seq - expectedSeq} record(s) before it were removed`
            : `record ${index} (${record.id}) has seq ${record.seq}, expected ${expectedSeq}: records were reordered or duplicated`,
      });
    } else if (prevHash !== '' && record.prev !== prevHash) {
      result.problems.push({
        index,
        id: record.id,
        kind: 'chain-broken',
        message: `record ${index} (${record.id}) does not chain to record ${index - 1}: that record was replaced or rewritten`,
      });
    }
    prevHash = record.hash;
    expectedSeq = record.seq + 1;
    result.head = record.hash;
  }
  result.ok = result.problems.length === 0;
  return result;
}

function idOf(line: string): string | undefined {
  try {
    const id = (JSON.parse(line) as { id?: unknown } | null)?.id;
    return typeof id === 'string' ? id.slice(0, 64) : undefined;
  } catch {
    return undefined;
  }
}
