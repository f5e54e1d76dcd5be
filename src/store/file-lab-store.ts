import { join, resolve } from 'node:path';
import { fileError } from '../disk-errors.js';
import { TrustedMsError } from '../errors.js';
import type { Role } from '../policy/types.js';
import { AuditLog } from './audit/audit-log.js';
import type { AuditRecord } from './audit/record.js';
import type { AuditVerifyResult } from './audit/verify.js';
import type { LockSettings } from './file-lock.js';
import { JsonFileStore } from './json-file-store.js';
import { type AuditEntry, emptyStoreData, type StoreData, validateStoreData } from './schema.js';
import type { LabStore, NewAuditEntry } from './store.js';

export interface LabStoreOptions {
  /** Roles of a new store (default: none). */
  seedRoles?: () => Record<string, Role>;
  /** The clock stamped on audit entries and records. */
  now?: () => Date;
  /** Lock tuning, mainly for tests. */
  lock?: Partial<LockSettings>;
  /**
   * This process is the store's writer while a lab runs (the security service): keep the store in
   * memory and the audit log's chain head and lock between writes (see JsonFileStore, AuditLog).
   * Every write is still durable before it resolves.
   */
  resident?: boolean;
  /** Told of every record this store appended, once it is durable (the audit checkpointer). */
  onAudit?: (record: AuditRecord) => void;
}

/** How long the resident writer keeps the audit log's lock after a write, for the next login's. */
const RESIDENT_AUDIT_HOLD_MS = 200;

export const STORE_FILE = 'store.json';
/** The tamper-evident audit log (hash-chained JSONL, see audit/). */
export const AUDIT_FILE = 'audit.jsonl';
/** The audit log of schema 1 (lowdb), migrated into AUDIT_FILE on the first write. */
export const LEGACY_AUDIT_FILE = 'audit.json';

/**
 * The lab's store in its home folder: `store.json` (users, roles, services) and `audit.jsonl`, kept
 * apart so that appending to the audit log never rewrites the users. The default store: no server.
 */
export class FileLabStore implements LabStore {
  readonly kind = 'lowdb' as const;
  readonly home: string;
  readonly now: () => Date;
  readonly #store: JsonFileStore<StoreData>;
  readonly #audit: AuditLog;
  readonly #onAudit: ((record: AuditRecord) => void) | undefined;

  constructor(home: string, opts: LabStoreOptions = {}) {
    this.home = resolve(home);
    this.#onAudit = opts.onAudit;
    this.now = opts.now ?? (() => new Date());
    const seedRoles = opts.seedRoles ?? (() => ({}));
    this.#store = new JsonFileStore<StoreData>({
      file: join(this.home, STORE_FILE),
      initial: () => emptyStoreData(seedRoles()),
      validate: validateStoreData,
      ...(opts.lock ? { lock: opts.lock } : {}),
      resident: opts.resident === true,
    });
    this.#audit = new AuditLog({
      file: join(this.home, AUDIT_FILE),
      legacyFile: join(this.home, LEGACY_AUDIT_FILE),
      ...(opts.lock ? { lock: opts.lock } : {}),
      ...(opts.resident === true ? { holdLockMs: RESIDENT_AUDIT_HOLD_MS } : {}),
    });
  }

  get storeFile(): string {
    return this.#store.file;
  }

  get auditFile(): string {
    return this.#audit.file;
  }

  /** Finishes queued audit appends and lets go of the audit log's lock (a resident writer's shutdown). */
  close(): Promise<void> {
    return this.#audit.close();
  }

  /**
   * A snapshot of the store; a store not created yet reads as its seed. Read-only: in a resident
   * store it is shared and frozen.
   */
  data(): Promise<StoreData> {
    return this.#store.read();
  }

  /** Read-modify-write under the store's file lock, durable when it resolves; see JsonFileStore.update. */
  update<R>(fn: (data: StoreData) => R | Promise<R>): Promise<R> {
    return this.#store.update(fn);
  }

  /** Appends to the audit log; resolves once the entry is on disk (see AuditLog.append). */
  async audit(entry: NewAuditEntry): Promise<void> {
    const { at, ...rest } = entry;
    const record = await this.#audit.append({ at: at ?? this.now().toISOString(), ...rest });
    this.#onAudit?.(record);
  }

  /**
   * Appends an entry the action itself depends on (a login granted, an admin change made): when it
   * cannot be written the action is refused, with the log's own error (DISK_FULL, DISK_READ_ONLY,
   * STORE_LOCKED...) and its cause in the message, never a bare "error".
   */
  async auditRequired(entry: NewAuditEntry): Promise<void> {
    try {
      await this.audit(entry);
    } catch (err) {
      const e = fileError(this.auditFile, 'append to', err);
      throw new TrustedMsError(
        e.code,
        `${entry.action} refused: it cannot be recorded in the audit log: ${e.message}`,
        { cause: err, actions: e.actions },
      );
    }
  }

  /** The audit entries in order, without their chain fields. */
  auditEntries(): Promise<AuditEntry[]> {
    return this.#audit.entries();
  }

  /** The audit records with their chain fields (seq, id, prev, hash). */
  auditRecords(): Promise<AuditRecord[]> {
    return this.#audit.records();
  }

  /** The audit log itself, for reading its tail and following it. */
  get auditLog(): AuditLog {
    return this.#audit;
  }

  /** Checks the audit log's hash chain; see AuditLog.verify. */
  verifyAudit(): Promise<AuditVerifyResult> {
    return this.#audit.verify();
  }
}
