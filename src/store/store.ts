import { join, resolve } from 'node:path';
import type { Role } from '../policy/types.js';
import { JsonFileStore, type LockSettings } from './json-file-store.js';
import {
  type AuditData,
  type AuditEntry,
  emptyAuditData,
  emptyStoreData,
  type StoreData,
  validateAuditData,
  validateStoreData,
} from './schema.js';

export interface LabStoreOptions {
  /** Roles of a new store (default: none). */
  seedRoles?: () => Record<string, Role>;
  /** The clock stamped on audit entries and records. */
  now?: () => Date;
  /** Lock tuning, mainly for tests. */
  lock?: Partial<LockSettings>;
}

export const STORE_FILE = 'store.json';
export const AUDIT_FILE = 'audit.json';

/**
 * The lab's store in its home folder: `store.json` (users, roles, services) and `audit.json`, kept
 * apart so that appending to the audit log never rewrites the users.
 */
export class LabStore {
  readonly home: string;
  readonly now: () => Date;
  readonly #store: JsonFileStore<StoreData>;
  readonly #audit: JsonFileStore<AuditData>;

  constructor(home: string, opts: LabStoreOptions = {}) {
    this.home = resolve(home);
    this.now = opts.now ?? (() => new Date());
    const seedRoles = opts.seedRoles ?? (() => ({}));
    this.#store = new JsonFileStore<StoreData>({
      file: join(this.home, STORE_FILE),
      initial: () => emptyStoreData(seedRoles()),
      validate: validateStoreData,
      ...(opts.lock ? { lock: opts.lock } : {}),
    });
    this.#audit = new JsonFileStore<AuditData>({
      file: join(this.home, AUDIT_FILE),
      initial: emptyAuditData,
      validate: validateAuditData,
      ...(opts.lock ? { lock: opts.lock } : {}),
    });
  }

  get storeFile(): string {
    return this.#store.file;
  }

  get auditFile(): string {
    return this.#audit.file;
  }

  /** A snapshot of the store; a store not created yet reads as its seed. */
  data(): Promise<StoreData> {
    return this.#store.read();
  }

  /** Read-modify-write under the store's file lock; see JsonFileStore.update. */
  update<R>(fn: (data: StoreData) => R | Promise<R>): Promise<R> {
    return this.#store.update(fn);
  }

  /** Entries waiting for the next audit write, with the callers waiting on it. */
  #auditBatch: { entries: AuditEntry[]; done: Promise<void> } | undefined;

  /**
   * Appends an entry; resolves once it is on disk. Performance: entries that arrive while an audit
   * write is queued go into that same write (group commit), since each write rereads and rewrites
   * the whole file: 20 attestations or a burst of logins cost one or two rewrites, not 20.
   */
  async audit(entry: Omit<AuditEntry, 'at'> & { at?: string }): Promise<void> {
    const { at, ...rest } = entry;
    const full: AuditEntry = { at: at ?? this.now().toISOString(), ...rest };
    if (this.#auditBatch === undefined) {
      const entries: AuditEntry[] = [];
      const done = this.#audit.update((data) => {
        // From here on new entries start the next batch: this one is being written.
        if (this.#auditBatch?.entries === entries) this.#auditBatch = undefined;
        data.entries.push(...entries);
      });
      this.#auditBatch = { entries, done };
    }
    this.#auditBatch.entries.push(full);
    await this.#auditBatch.done;
  }

  async auditEntries(): Promise<AuditEntry[]> {
    return (await this.#audit.read()).entries;
  }
}
