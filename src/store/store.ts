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

  async audit(entry: Omit<AuditEntry, 'at'> & { at?: string }): Promise<void> {
    const { at, ...rest } = entry;
    const full: AuditEntry = { at: at ?? this.now().toISOString(), ...rest };
    await this.#audit.update((data) => {
      data.entries.push(full);
    });
  }

  async auditEntries(): Promise<AuditEntry[]> {
    return (await this.#audit.read()).entries;
  }
}
