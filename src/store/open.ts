import { defaultRoles } from '../policy/roles.js';
import { FileLabStore } from './file-lab-store.js';
import type { LabStore } from './store.js';

/**
 * The lab's store in `home`, seeded with the default roles the first time it is created.
 * `resident`: for the security service, the store's writer while a lab runs (see LabStoreOptions).
 * `now`: the clock of its records and audit entries (the wall clock by default).
 */
export function openLabStore(home: string, opts: { resident?: boolean; now?: () => Date } = {}): LabStore {
  return new FileLabStore(home, {
    seedRoles: defaultRoles,
    resident: opts.resident === true,
    ...(opts.now ? { now: opts.now } : {}),
  });
}
