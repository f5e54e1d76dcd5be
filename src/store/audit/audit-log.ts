import { DEFAULT_LOCK_SETTINGS, type LockSettings } from '../file-lock.js';
import type { AuditEntry } from '../schema.js';
import { followLog, logSize } from './follow.js';
import { readLegacyAudit } from './migration.js';
import { parseLines, readLines } from './read.js';
import { type AuditRecord, stripChain } from './record.js';
import { type AuditVerifyResult, emptyVerifyResult, verifyLines } from './verify.js';
import { AuditWriter } from './writer.js';

/**
 * The tamper-evident audit log: one JSON record per line (JSONL), each carrying the SHA-256 of the
 * previous record, so that editing, removing or reordering a record breaks the chain at that point.
 *
 * Why JSONL and not lowdb: lowdb rewrites the whole file on every write, so an append costs O(size
 * of the log), and the log only ever grows. Here appends are written under the same proper-lockfile
 * lock discipline as the store, so other processes (the CLI while the lab is down) stay serialised
 * with the security service.
 *
 * The parts: the record format and its hash (record.ts), appending (writer.ts), walking the chain
 * (verify.ts), reading what is appended as it comes (follow.ts), the schema-1 `audit.json`
 * (migration.ts).
 *
 * What the chain cannot show by itself: records cut off at the end (the tail is still a valid
 * chain). `audit verify` prints the head hash and count so that they can be kept elsewhere.
 */

export interface AuditLogOptions {
  file: string;
  /** The lowdb `audit.json` of schema 1, migrated into the chain on the first write. */
  legacyFile?: string;
  lock?: Partial<LockSettings>;
  /** Keep the lock this long (ms) after the last write, for the next one (default 0: release at once). */
  holdLockMs?: number;
}

export class AuditLog {
  readonly file: string;
  readonly legacyFile: string | undefined;
  readonly #writer: AuditWriter;

  constructor(opts: AuditLogOptions) {
    this.file = opts.file;
    this.legacyFile = opts.legacyFile;
    this.#writer = new AuditWriter({
      file: opts.file,
      legacyFile: opts.legacyFile,
      lock: { ...DEFAULT_LOCK_SETTINGS, ...opts.lock },
      holdLockMs: opts.holdLockMs ?? 0,
    });
  }

  /**
   * Appends one entry, chained to the last record, and resolves with the record once it is on disk
   * (written and fsynced).
   */
  append(entry: AuditEntry): Promise<AuditRecord> {
    return this.#writer.append(entry);
  }

  /** Waits for queued appends, then lets go of the lock (a holder's shutdown). */
  close(): Promise<void> {
    return this.#writer.close();
  }

  /** Every record, checked for shape (not for the chain: see `verify`). */
  async records(): Promise<AuditRecord[]> {
    const lines = await readLines(this.file);
    if (lines === undefined) return [];
    return parseLines(this.file, lines);
  }

  /**
   * The entries in order: the chained log, or (before the first write migrates it) the legacy
   * `audit.json`.
   */
  async entries(): Promise<AuditEntry[]> {
    const lines = await readLines(this.file);
    if (lines === undefined) {
      const legacy = await this.#readLegacy();
      return legacy ?? [];
    }
    return (await this.records()).map(stripChain);
  }

  /** The last `n` records (all of them when the log is shorter). */
  async last(n: number): Promise<AuditRecord[]> {
    const records = await this.records();
    return n <= 0 ? [] : records.slice(-n);
  }

  /**
   * Records appended after byte `offset`, polled every `intervalMs` until `signal` aborts. Only whole
   * lines are read; a log that shrank (replaced, or restored from a backup) is read again from the start.
   */
  follow(offset: number, signal: AbortSignal, intervalMs = 250): AsyncGenerator<AuditRecord> {
    return followLog(this.file, offset, signal, intervalMs);
  }

  /** The log's size in bytes now (0 when it does not exist): where `follow` starts. */
  size(): Promise<number> {
    return logSize(this.file);
  }

  /** Walks the whole chain and reports every record that breaks it, by index and id. */
  async verify(): Promise<AuditVerifyResult> {
    const lines = await readLines(this.file);
    if (lines === undefined) {
      const result = emptyVerifyResult(this.file);
      const legacy = await this.#readLegacy();
      if (legacy !== undefined) result.legacyEntries = legacy.length;
      return result;
    }
    return verifyLines(this.file, lines);
  }

  #readLegacy(): Promise<AuditEntry[] | undefined> {
    return this.legacyFile === undefined ? Promise.resolve(undefined) : readLegacyAudit(this.legacyFile);
  }
}
