import { defaultRoles } from '../policy/roles.js';
import type { AuditRecord } from './audit/record.js';
import { readStoreBackend } from './backend.js';
import { FileLabStore } from './file-lab-store.js';
import { PostgresLabStore } from './postgres/postgres-lab-store.js';
import type { LabStore } from './store.js';

/**
 * The lab's store in `home` (its files, or the PostgreSQL database `lab up --store postgres` chose:
 * see backend.ts), seeded with the default roles the first time it is created.
 * `resident`: for the security service, the store's writer while a lab runs (see LabStoreOptions).
 * `now`: the clock of its records and audit entries (the wall clock by default).
 * `onAudit`: told of every record this store object appended (the security service's checkpointer).
 */
export function openLabStore(
  home: string,
  opts: { resident?: boolean; now?: () => Date; onAudit?: (record: AuditRecord) => void } = {},
): LabStore {
  const backend = readStoreBackend(home);
  if (backend.kind === 'postgres') {
    return new PostgresLabStore(
      home,
      { url: backend.url, ...(backend.passwordFile ? { passwordFile: backend.passwordFile } : {}) },
      {
        seedRoles: defaultRoles,
        ...(opts.now ? { now: opts.now } : {}),
        ...(opts.onAudit ? { onAudit: opts.onAudit } : {}),
      },
    );
  }
  return new FileLabStore(home, {
    seedRoles: defaultRoles,
    resident: opts.resident === true,
    ...(opts.now ? { now: opts.now } : {}),
    ...(opts.onAudit ? { onAudit: opts.onAudit } : {}),
  });
}
