import { defaultRoles } from '../policy/roles.js';
import { LabStore } from './store.js';

/** The lab's store in `home`, seeded with the default roles the first time it is created. */
export function openLabStore(home: string): LabStore {
  return new LabStore(home, { seedRoles: defaultRoles });
}
