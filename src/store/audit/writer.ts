import { constants as fsConstants } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { type HeldFileLock, type LockSettings, lockStoreFile } from '../file-lock.js';
import { serialised } from '../in-process-queue.js';
import type { AuditEntry } from '../schema.js';
import { corrupt, ioError } from './errors.js';
import { migrateLegacyAudit } from './migration.js';
import { AUDIT_GENESIS, type AuditRecord, chainRecord, parseLine } from './record.js';

/**
 * Appending to the audit log. An append resolves only once its line is written and fsynced.
 * Appends that arrive while a write is in flight are written together in the next one (group
 * commit: one write and one fsync for the batch). The chain head (last seq and hash, and the
 * file's inode and size after our last write) is kept in memory: the last line is read again only
 * when the file is not the one we last wrote (another process appended, or it was replaced). With
 * `holdLockMs` (the security service, the log's writer while a lab runs) the lock is kept that long
 * after a write in case more come, so a burst of logins pays one lock, not one per entry.
 */

export interface AuditWriterOptions {
  file: string;
  /** The legacy `audit.json`, migrated into the chain on the first write. */
  legacyFile: string | undefined;
  lock: LockSettings;
  /** Keep the lock this long (ms) after the last write, for the next one (0: release at once). */
  holdLockMs: number;
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

export class AuditWriter {
  readonly file: string;
  readonly #legacyFile: string | undefined;
  readonly #lock: LockSettings;
  readonly #holdLockMs: number;
  #queue: QueuedAppend[] = [];
  #flushing = false;
  #held: Held | undefined;
  #head: Head | undefined;
  #releaseTimer: NodeJS.Timeout | undefined;

  constructor(opts: AuditWriterOptions) {
    this.file = opts.file;
    this.#legacyFile = opts.legacyFile;
    this.#lock = opts.lock;
    this.#holdLockMs = opts.holdLockMs;
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
        const record = chainRecord(JSON.parse(JSON.stringify(entry)) as AuditEntry, seq + 1, hash);
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
      if (this.#legacyFile !== undefined) await migrateLegacyAudit(this.file, this.#legacyFile);
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
