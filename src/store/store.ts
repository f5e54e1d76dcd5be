import type { AuditRecord } from './audit/record.js';
import type { AuditVerifyResult } from './audit/verify.js';
import type { ReplicaSupport } from './replica-support.js';
import type { AuditEntry, StoreData } from './schema.js';

/** An audit entry as callers give it: `at` defaults to the store's clock. */
export type NewAuditEntry = Omit<AuditEntry, 'at'> & { at?: string };

/**
 * Reading the audit log as it grows (`audit tail`). A position is opaque to callers: bytes in the
 * file store, the next `seq` in PostgreSQL; `size()` says where `follow` starts.
 */
export interface AuditLogReader {
  /** The last `n` records (all of them when the log is shorter). */
  last(n: number): Promise<AuditRecord[]>;
  /** Where the log ends now: `follow` from here sees only what comes after. */
  size(): Promise<number>;
  /** Records appended after `position`, polled every `intervalMs` until `signal` aborts. */
  follow(position: number, signal: AbortSignal, intervalMs?: number): AsyncGenerator<AuditRecord>;
}

/** Which implementation a store is, for `lab status` and error messages only. */
export type StoreKind = 'lowdb' | 'postgres';

/**
 * The lab's store: one document (users, roles, services, revocations) changed by read-modify-write,
 * and a hash-chained audit log. Two implementations: the files in the lab home (FileLabStore, the
 * default) and PostgreSQL (PostgresLabStore). Callers get one from `openLabStore` and never ask
 * which.
 */
export interface LabStore {
  readonly kind: StoreKind;
  /** The lab home the store belongs to (files beside it, such as the login throttle, live there). */
  readonly home: string;
  /** The clock stamped on audit entries and records. */
  readonly now: () => Date;
  /**
   * A snapshot of the store; a store not created yet reads as its seed. Read-only: it may be shared
   * and frozen.
   */
  data(): Promise<StoreData>;
  /**
   * Read-modify-write, serialised with every other writer (in any process); durable when it
   * resolves. If `fn` throws, nothing is written and the error propagates.
   */
  update<R>(fn: (data: StoreData) => R | Promise<R>): Promise<R>;
  /** Appends to the audit log; resolves once the entry is durable. */
  audit(entry: NewAuditEntry): Promise<void>;
  /**
   * Appends an entry the action itself depends on (a login granted, an admin change made): when it
   * cannot be written the action is refused with the store's own error code and its cause in the
   * message, never a bare "error".
   */
  auditRequired(entry: NewAuditEntry): Promise<void>;
  /** The audit entries in order, without their chain fields. */
  auditEntries(): Promise<AuditEntry[]>;
  /** The audit records with their chain fields (seq, id, prev, hash). */
  auditRecords(): Promise<AuditRecord[]>;
  /** The audit log for reading its tail and following it. */
  readonly auditLog: AuditLogReader;
  /** Walks the audit log's hash chain and reports every record that breaks it. */
  verifyAudit(): Promise<AuditVerifyResult>;
  /**
   * What security service replicas share besides the document (shared logins, word of changes):
   * only a store that can have several security services (PostgreSQL); absent on the files.
   */
  readonly replicas?: ReplicaSupport;
  /** Finishes queued audit appends and lets go of what the store holds (locks, connections). */
  close(): Promise<void>;
}
