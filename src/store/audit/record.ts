import { createHash, randomUUID } from 'node:crypto';
import canonicalizeModule from 'canonicalize';
import { TrustedMsError } from '../../errors.js';
import { type AuditEntry, checkAuditEntry } from '../schema.js';

// canonicalize 2 (RFC 8785, JSON Canonicalization Scheme) is CommonJS with an ES-style d.ts: at
// run time the default import is the function itself. (3+ needs Node 22.)
const canonicalize = canonicalizeModule as unknown as (value: unknown) => string | undefined;

/**
 * One record of the audit log, as a line of JSONL: the entry plus its place in the hash chain
 * (version, seq, id, the previous record's hash, its own hash over its RFC 8785 canonical JSON).
 */

export const AUDIT_LOG_VERSION = 1;
/** The `prev` of the first record: a fixed, domain-separated value, not all zeros by accident. */
export const AUDIT_GENESIS = createHash('sha256').update('trusted-ms audit log genesis v1').digest('hex');

export interface AuditRecord extends AuditEntry {
  v: typeof AUDIT_LOG_VERSION;
  /** 0-based position in the log; a gap or a repeat shows removed or reordered records. */
  seq: number;
  id: string;
  /** `hash` of the record before, or AUDIT_GENESIS. */
  prev: string;
  /** SHA-256 (hex) of the RFC 8785 canonical JSON of this record without `hash`. */
  hash: string;
}

const HEX64 = /^[0-9a-f]{64}$/;

export function recordHash(record: Omit<AuditRecord, 'hash'> & { hash?: string }): string {
  const { hash: _ignored, ...rest } = record;
  const text = canonicalize(rest);
  if (text === undefined) throw new TrustedMsError('INTERNAL', 'audit record cannot be canonicalized');
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** `entry` as the record at `seq`, chained to the record whose hash is `prev`. */
export function chainRecord(entry: AuditEntry, seq: number, prev: string): AuditRecord {
  const base = { ...entry, v: AUDIT_LOG_VERSION, seq, id: randomUUID(), prev } as Omit<AuditRecord, 'hash'>;
  return { ...base, hash: recordHash(base) };
}

/** Shape of one parsed line; throws a plain message (the caller adds the file and index). */
function checkRecord(raw: unknown): AuditRecord {
  checkAuditEntry(raw, '');
  const o = raw as Record<string, unknown>;
  if (o.v !== AUDIT_LOG_VERSION) throw new Error(`v: expected ${AUDIT_LOG_VERSION}`);
  if (!Number.isSafeInteger(o.seq) || (o.seq as number) < 0) throw new Error('seq: expected an integer ≥ 0');
  if (typeof o.id !== 'string' || o.id.length === 0 || o.id.length > 64)
    throw new Error('id: expected a string');
  if (typeof o.prev !== 'string' || !HEX64.test(o.prev)) throw new Error('prev: expected a SHA-256 hex');
  if (typeof o.hash !== 'string' || !HEX64.test(o.hash)) throw new Error('hash: expected a SHA-256 hex');
  return o as unknown as AuditRecord;
}

export function parseLine(line: string): AuditRecord {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    throw new Error('not JSON');
  }
  return checkRecord(raw);
}

export function stripChain(record: AuditRecord): AuditEntry {
  const { v: _v, seq: _s, id: _i, prev: _p, hash: _h, ...entry } = record;
  return entry;
}
