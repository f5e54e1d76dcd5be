import { resolve } from 'node:path';
import { TrustedMsError } from '../../errors.js';
import type { AuditRecord } from '../audit/record.js';
import type { AuditVerifyResult } from '../audit/verify.js';
import type { LabStoreOptions } from '../file-lab-store.js';
import type { ReplicaSupport } from '../replica-support.js';
import { type AuditEntry, emptyStoreData, type StoreData } from '../schema.js';
import type { AuditLogReader, LabStore, NewAuditEntry } from '../store.js';
import { PostgresAuditLog } from './audit-table.js';
import { PostgresChangeChannel } from './change-channel.js';
import { PostgresConnection, type PostgresTarget } from './connection.js';
import { PostgresDocument } from './document.js';
import { PostgresLoginThrottle } from './login-throttle-table.js';
import { PostgresPendingLogins } from './pending-login-table.js';

/**
 * The lab's store in a PostgreSQL database: the same contract as FileLabStore (one document changed
 * by read-modify-write, a hash-chained audit log with the same records and verification), shared by
 * every process that opens it. Nothing is kept in memory between calls, so `resident` changes
 * nothing here: every process reads what the database holds.
 */
export class PostgresLabStore implements LabStore {
  readonly kind = 'postgres' as const;
  readonly home: string;
  readonly now: () => Date;
  readonly #db: PostgresConnection;
  readonly #document: PostgresDocument;
  readonly #audit: PostgresAuditLog;
  readonly replicas: ReplicaSupport;
  readonly #onAudit: ((record: AuditRecord) => void) | undefined;

  constructor(
    home: string,
    target: PostgresTarget,
    opts: Pick<LabStoreOptions, 'seedRoles' | 'now' | 'onAudit'> = {},
  ) {
    this.home = resolve(home);
    this.#onAudit = opts.onAudit;
    this.now = opts.now ?? (() => new Date());
    const seedRoles = opts.seedRoles ?? (() => ({}));
    this.#db = new PostgresConnection(target);
    const changes = new PostgresChangeChannel(this.#db);
    this.#document = new PostgresDocument(
      this.#db,
      () => emptyStoreData(seedRoles()),
      (client) => changes.announce(client),
    );
    this.replicas = {
      pendingLogins: new PostgresPendingLogins(this.#db),
      changes,
      lockout: new PostgresLoginThrottle(this.#db),
    };
    this.#audit = new PostgresAuditLog(this.#db);
  }

  /** The server, without its password. */
  get where(): string {
    return this.#db.where;
  }

  data(): Promise<StoreData> {
    return this.#document.read();
  }

  update<R>(fn: (data: StoreData) => R | Promise<R>): Promise<R> {
    return this.#document.update(fn);
  }

  async audit(entry: NewAuditEntry): Promise<void> {
    const { at, ...rest } = entry;
    const record = await this.#audit.append({ at: at ?? this.now().toISOString(), ...rest });
    this.#onAudit?.(record);
  }

  async auditRequired(entry: NewAuditEntry): Promise<void> {
    try {
      await this.audit(entry);
    } catch (err) {
      const e =
        err instanceof TrustedMsError
          ? err
          : new TrustedMsError('STORE_IO', err instanceof Error ? err.message : String(err));
      throw new TrustedMsError(
        e.code,
        `${entry.action} refused: it cannot be recorded in the audit log: ${e.message}`,
        { cause: err, actions: e.actions },
      );
    }
  }

  auditEntries(): Promise<AuditEntry[]> {
    return this.#audit.entries();
  }

  auditRecords(): Promise<AuditRecord[]> {
    return this.#audit.records();
  }

  get auditLog(): AuditLogReader {
    return this.#audit;
  }

  verifyAudit(): Promise<AuditVerifyResult> {
    return this.#audit.verify();
  }

  async close(): Promise<void> {
    await this.#audit.close();
    await this.#db.close();
  }
}
