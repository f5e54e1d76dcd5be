import { createHash, randomUUID } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { type FileHandle, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import canonicalizeModule from 'canonicalize';
import { fileError } from '../../disk-errors.js';
import { errnoCode, TrustedMsError } from '../../errors.js';
import { syncDir } from '../../fs-sync.js';
import { DEFAULT_LOCK_SETTINGS, type HeldFileLock, type LockSettings, lockStoreFile } from '../file-lock.js';
import { serialised } from '../in-process-queue.js';
import { type AuditEntry, checkAuditEntry, validateAuditData } from '../schema.js';

// canonicalize 2 (RFC 8785, JSON Canonicalization Scheme) is CommonJS with an ES-style d.ts: at
// run time the default import is the function itself. (3+ needs Node 22.)
const canonicalize = canonicalizeModule as unknown as (value: unknown) => string | undefined;

/**
 * The tamper-evident audit log: one JSON record per line (JSONL), each carrying the SHA-256 of the
 * previous record, so that editing, removing or reordering a record breaks the chain at that point.
 *
 * Why JSONL and not lowdb: lowdb rewrites the whole file on every write, so an append costs O(size
 * of the log), and the log only ever grows. Here appends are written under the same proper-lockfile
 * lock discipline as the store, so other processes (the CLI while the lab is down) stay serialised
 * with the security service.
 *
 * Durability and cost: an append resolves only once its line is written and fsynced. Appends that
 * arrive while a write is in flight are written together in the next one (group commit: one write
 * and one fsync for the batch). The chain head (last seq and hash, and the file's inode and size
 * after our last write) is kept in memory: the last line is read again only when the file is not
 * the one we last wrote (another process appended, or it was replaced). With `holdLockMs` (the
 * security service, the log's writer while a lab runs) the lock is kept that long after a write in
 * case more come, so a burst of logins pays one lock, not one per entry.
 *
 * What the chain cannot show by itself: records cut off at the end (the tail is still a valid
 * chain). `audit verify` prints the head hash and count so that they can be kept elsewhere.
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

const HEX64 = /^[0-9a-f]{64}$/;

export function recordHash(record: Omit<AuditRecord, 'hash'> & { hash?: string }): string {
  const { hash: _ignored, ...rest } = record;
  const text = canonicalize(rest);
  if (text === undefined) throw new TrustedMsError('INTERNAL', 'audit record cannot be canonicalized');
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

function corrupt(file: string, why: string): TrustedMsError {
  return new TrustedMsError('STORE_CORRUPT', `${file} is not a valid trusted-ms audit log: ${why}`, {
    actions: [`run \`trusted-ms audit verify\` to see where`, 'the file was left untouched'],
  });
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

function parseLine(line: string): AuditRecord {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    throw new Error('not JSON');
  }
  return checkRecord(raw);
}

function ioError(file: string, what: string, err: unknown): TrustedMsError {
  return fileError(file, what, err, { write: what !== 'read' });
}

export interface AuditLogOptions {
  file: string;
  /** The lowdb `audit.json` of schema 1, migrated into the chain on the first write. */
  legacyFile?: string;
  lock?: Partial<LockSettings>;
  /** Keep the lock this long (ms) after the last write, for the next one (default 0: release at once). */
  holdLockMs?: number;
}

interface QueuedAppend {
  entry: AuditEntry;
  resolve: (record: AuditRecord) => void;
  reject: (err: unknown) => void;
}

/** The lock and the open log while we hold them. */
interface Held {
  lock: HeldFileLock;
  handle: FileHandle;
}

/** The end of the log as we last wrote or read it. */
interface Head {
  ino: bigint;
  size: bigint;
  seq: number;
  hash: string;
}

export class AuditLog {
  readonly file: string;
  readonly legacyFile: string | undefined;
  readonly #lock: LockSettings;
  readonly #holdLockMs: number;
  #queue: QueuedAppend[] = [];
  #flushing = false;
  #held: Held | undefined;
  #head: Head | undefined;
  #releaseTimer: NodeJS.Timeout | undefined;

  constructor(opts: AuditLogOptions) {
    this.file = opts.file;
    this.legacyFile = opts.legacyFile;
    this.#lock = { ...DEFAULT_LOCK_SETTINGS, ...opts.lock };
    this.#holdLockMs = opts.holdLockMs ?? 0;
  }

  /**
   * Appends one entry, chained to the last record, and resolves with the record once it is on disk
   * (written and fsynced).
   */
  append(entry: AuditEntry): Promise<AuditRecord> {
    return new Promise<AuditRecord>((resolve, reject) => {
      this.#queue.push({ entry, resolve, reject });
      if (!this.#flushing) {
        this.#flushing = true;
        void this.#flush();
      }
    });
  }

  /** Waits for queued appends, then lets go of the lock (a holder's shutdown). */
  async close(): Promise<void> {
    while (this.#flushing) await new Promise((r) => setImmediate(r));
    clearTimeout(this.#releaseTimer);
    await serialised(this.file, () => this.#letGo());
  }

  async #flush(): Promise<void> {
    clearTimeout(this.#releaseTimer);
    while (this.#queue.length > 0) {
      await serialised(this.file, () => this.#writeBatch()).catch(() => undefined);
    }
    this.#flushing = false;
    // Not through `serialised`: another AuditLog of this file in this process may be queued there,
    // waiting for the very lock this lets go of. No batch of ours runs now (a new flush clears the timer).
    if (this.#holdLockMs > 0) {
      this.#releaseTimer = setTimeout(() => void this.#letGo(), this.#holdLockMs);
      this.#releaseTimer.unref();
    } else {
      await this.#letGo();
    }
  }

  /** Writes everything queued so far as one batch; each append learns its outcome. */
  async #writeBatch(): Promise<void> {
    let batch: QueuedAppend[] = [];
    try {
      const held = await this.#hold();
      let head = this.#head;
      if (head === undefined) {
        const last = await this.#lastRecord(held.handle);
        const { ino, size } = await held.handle.stat({ bigint: true });
        head = { ino, size, seq: last ? last.seq : -1, hash: last ? last.hash : AUDIT_GENESIS };
      }
      // Taken only now: what arrived while the lock was being taken joins this write.
      batch = this.#queue.splice(0);
      const records: AuditRecord[] = [];
      let { seq, hash } = head;
      for (const { entry } of batch) {
        // Through JSON first: what is hashed must be exactly what a reader will parse back.
        const base = {
          ...(JSON.parse(JSON.stringify(entry)) as AuditEntry),
          v: AUDIT_LOG_VERSION,
          seq: seq + 1,
          id: randomUUID(),
          prev: hash,
        } as Omit<AuditRecord, 'hash'>;
        const record: AuditRecord = { ...base, hash: recordHash(base) };
        records.push(record);
        seq = record.seq;
        hash = record.hash;
      }
      // A lock taken over (stale) means another writer may have chained onto the same last
      // record: writing now would fork the chain, which verify would call tampering.
      held.lock.assertHeld('appending');
      const text = Buffer.from(records.map((r) => `${JSON.stringify(r)}\n`).join(''), 'utf8');
      // One write(2) with O_APPEND: a reader sees whole lines (a line cut by a crash is dropped by
      // the next writer, it was never acknowledged), then the fsync that makes them acknowledged.
      try {
        let written = 0;
        // A nearly full disk takes part of a write and answers the rest's write with its errno
        // (ENOSPC): that second write is what names the cause for the user.
        while (written < text.length) {
          const { bytesWritten } = await held.handle.write(text, written, text.length - written);
          if (bytesWritten === 0) throw new Error('the file system accepted no bytes');
          written += bytesWritten;
        }
        await held.handle.sync();
      } catch (err) {
        // Not acknowledged: take the part that did reach the file away now, so nothing half-written
        // stays (the next writer would drop it, but a reader or `audit verify` could see it first).
        await held.handle.truncate(Number(head.size)).catch(() => undefined);
        throw ioError(this.file, 'append to', err);
      }
      this.#head = { ino: head.ino, size: head.size + BigInt(text.length), seq, hash };
      for (const [i, p] of batch.entries()) p.resolve(records[i] as AuditRecord);
    } catch (err) {
      // What is on disk is unknown now: read the end again next time, under a fresh lock.
      this.#head = undefined;
      await this.#letGo();
      if (batch.length === 0) batch = this.#queue.splice(0);
      for (const p of batch) p.reject(err);
    }
  }

  /** The lock and the open log, taken now unless still held (and not lost) from the last write. */
  async #hold(): Promise<Held> {
    if (this.#held?.lock.compromised) await this.#letGo();
    if (this.#held !== undefined) return this.#held;
    const lock = await lockStoreFile(this.file, this.#lock);
    try {
      await this.#migrateLegacy();
      let handle: FileHandle;
      try {
        handle = await open(
          this.file,
          fsConstants.O_RDWR | fsConstants.O_CREAT | fsConstants.O_APPEND,
          0o600,
        );
      } catch (err) {
        throw ioError(this.file, 'open', err);
      }
      const { ino, size } = await handle.stat({ bigint: true });
      // Someone else wrote (or replaced the file) since our last write: find the end again.
      if (this.#head !== undefined && (this.#head.ino !== ino || this.#head.size !== size))
        this.#head = undefined;
      this.#held = { lock, handle };
      return this.#held;
    } catch (err) {
      await lock.release();
      throw err;
    }
  }

  async #letGo(): Promise<void> {
    const held = this.#held;
    this.#held = undefined;
    if (held === undefined) return;
    await held.handle.close().catch(() => undefined);
    await held.lock.release();
  }

  /** Every record, checked for shape (not for the chain: see `verify`). */
  async records(): Promise<AuditRecord[]> {
    const lines = await this.#lines();
    if (lines === undefined) return [];
    return lines.map((line, i) => {
      try {
        return parseLine(line);
      } catch (err) {
        throw corrupt(this.file, `line ${i + 1}: ${(err as Error).message}`);
      }
    });
  }

  /**
   * The entries in order: the chained log, or (before the first write migrates it) the legacy
   * `audit.json`.
   */
  async entries(): Promise<AuditEntry[]> {
    const lines = await this.#lines();
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
  async *follow(offset: number, signal: AbortSignal, intervalMs = 250): AsyncGenerator<AuditRecord> {
    let pos = offset;
    while (!signal.aborted) {
      let size = 0;
      try {
        size = (await stat(this.file)).size;
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') throw ioError(this.file, 'read', err);
      }
      if (size < pos) pos = 0;
      if (size > pos) {
        const handle = await open(this.file, 'r');
        try {
          const buf = Buffer.alloc(size - pos);
          const { bytesRead } = await handle.read(buf, 0, buf.length, pos);
          const text = buf.subarray(0, bytesRead);
          const end = text.lastIndexOf(0x0a);
          if (end >= 0) {
            for (const line of text.subarray(0, end).toString('utf8').split('\n')) {
              try {
                yield parseLine(line);
              } catch (err) {
                throw corrupt(this.file, `at byte ${pos}: ${(err as Error).message}`);
              }
            }
            pos += end + 1;
          }
        } finally {
          await handle.close();
        }
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, intervalMs);
        signal.addEventListener(
          'abort',
          () => {
            clearTimeout(timer);
            resolve();
          },
          { once: true },
        );
      });
    }
  }

  /** The log's size in bytes now (0 when it does not exist): where `follow` starts. */
  async size(): Promise<number> {
    try {
      return (await stat(this.file)).size;
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return 0;
      throw ioError(this.file, 'read', err);
    }
  }

  /** Walks the whole chain and reports every record that breaks it, by index and id. */
  async verify(): Promise<AuditVerifyResult> {
    const lines = await this.#lines();
    const result: AuditVerifyResult = {
      ok: true,
      file: this.file,
      entries: 0,
      head: AUDIT_GENESIS,
      problems: [],
    };
    if (lines === undefined) {
      const legacy = await this.#readLegacy();
      if (legacy !== undefined) result.legacyEntries = legacy.length;
      return result;
    }
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

  /** Lines of the chained log; `undefined` when it does not exist yet. A cut last line is left out. */
  async #lines(): Promise<string[] | undefined> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return undefined;
      throw ioError(this.file, 'read', err);
    }
    const lines = text.split('\n');
    // The part after the last newline is empty, or a line a writer is writing / a crash cut: not a record.
    lines.pop();
    return lines;
  }

  async #readLegacy(): Promise<AuditEntry[] | undefined> {
    if (this.legacyFile === undefined) return undefined;
    let text: string;
    try {
      text = await readFile(this.legacyFile, 'utf8');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return undefined;
      throw ioError(this.legacyFile, 'read', err);
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (err) {
      throw new TrustedMsError('STORE_CORRUPT', `${this.legacyFile} is not valid JSON`, {
        cause: err,
        actions: [`restore ${this.legacyFile} from a backup, or move it away`, 'the file was left untouched'],
      });
    }
    return validateAuditData(raw, this.legacyFile).entries;
  }

  /**
   * Schema-1 `audit.json` (a lowdb array) → the chained log, once, under the log's lock: its entries
   * are chained in order from the genesis, then a `audit.migrate` record says from where the chain
   * vouches for the log (the legacy entries were not tamper-evident before). The old file is kept
   * as `audit.json.migrated`. Only done while no chained log exists, so it can never run twice.
   */
  async #migrateLegacy(): Promise<void> {
    if (this.legacyFile === undefined) return;
    try {
      await stat(this.file); // not #lines(): an append must not read the whole log
      return;
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw ioError(this.file, 'read', err);
    }
    const legacy = await this.#readLegacy();
    if (legacy === undefined || this.legacyFile === undefined) return;
    let prev = AUDIT_GENESIS;
    const out: string[] = [];
    const all: AuditEntry[] = [
      ...legacy,
      {
        at: new Date().toISOString(),
        actor: 'trusted-ms',
        action: 'audit.migrate',
        outcome: 'ok',
        detail: { from: this.legacyFile, entries: legacy.length },
      },
    ];
    for (const [seq, entry] of all.entries()) {
      const base = { ...entry, v: AUDIT_LOG_VERSION, seq, id: randomUUID(), prev } as Omit<
        AuditRecord,
        'hash'
      >;
      const hash = recordHash(base);
      out.push(JSON.stringify({ ...base, hash }));
      prev = hash;
    }
    const tmp = `${this.file}.${randomUUID()}.tmp`;
    try {
      const handle = await open(tmp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
      try {
        await handle.writeFile(`${out.join('\n')}\n`);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(tmp, this.file);
      await rename(this.legacyFile, `${this.legacyFile}.migrated`);
      await syncDir(dirname(this.file));
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw ioError(this.file, 'migrate the audit log into', err);
    }
  }

  /**
   * The last whole record, read backwards from the end in growing chunks (an append must not cost
   * the size of the log). A cut last line, left by a writer that died mid-write, is truncated away.
   */
  async #lastRecord(handle: FileHandle): Promise<AuditRecord | undefined> {
    const { size } = await handle.stat();
    if (size === 0) return undefined;
    let chunk = 4096;
    for (;;) {
      const start = Math.max(0, size - chunk);
      const buf = Buffer.alloc(size - start);
      await handle.read(buf, 0, buf.length, start);
      let end = buf.length;
      if (buf[end - 1] !== 0x0a) {
        const lastNl = buf.lastIndexOf(0x0a);
        if (lastNl < 0 && start > 0) {
          chunk *= 4;
          continue;
        }
        // Drop the cut line: it was never acknowledged to anyone.
        await handle.truncate(start + lastNl + 1);
        if (lastNl < 0) return undefined;
        end = lastNl + 1;
      }
      // (A negative offset would search from the end: guard the one-byte case.)
      const before = end >= 2 ? buf.lastIndexOf(0x0a, end - 2) : -1;
      if (before < 0 && start > 0) {
        chunk *= 4;
        continue;
      }
      const line = buf.subarray(before + 1, end - 1).toString('utf8');
      try {
        return parseLine(line);
      } catch (err) {
        // Never chain onto a record we cannot read: that would hide the damage.
        throw corrupt(this.file, `the last record: ${(err as Error).message}`);
      }
    }
  }
}

export function stripChain(record: AuditRecord): AuditEntry {
  const { v: _v, seq: _s, id: _i, prev: _p, hash: _h, ...entry } = record;
  return entry;
}

function idOf(line: string): string | undefined {
  try {
    const id = (JSON.parse(line) as { id?: unknown } | null)?.id;
    return typeof id === 'string' ? id.slice(0, 64) : undefined;
  } catch {
    return undefined;
  }
}
