import { readFileSync } from 'node:fs';
import { TrustedMsError } from '../errors.js';
import { fixturePath } from '../paths.js';
import { ACTIONS, type Role } from './types.js';

const ROLE_NAME = /^[a-z][a-z0-9-]{0,31}$/;

/** Checks a roles document's shape; `knownDatabases`, when given, catches grants to typos. */
export function parseRoles(doc: unknown, knownDatabases?: ReadonlySet<string>): Record<string, Role> {
  const list = (doc as { roles?: unknown } | null)?.roles;
  if (!Array.isArray(list))
    throw new TrustedMsError('INVALID_INPUT', 'a roles document needs a "roles" array');
  const roles: Record<string, Role> = {};
  for (const [i, raw] of list.entries()) {
    const where = `roles[${i}]`;
    // (A null entry used to escape as a TypeError: found by the parser fuzz suite.)
    if (typeof raw !== 'object' || raw === null) {
      throw new TrustedMsError('INVALID_INPUT', `${where}: expected an object`);
    }
    const r = raw as Partial<Role>;
    if (typeof r.name !== 'string' || !ROLE_NAME.test(r.name)) {
      throw new TrustedMsError('INVALID_INPUT', `${where}: name must match ${ROLE_NAME}`);
    }
    // Own keys only: `roles.constructor` is Object's, and used to read as a duplicate.
    if (Object.hasOwn(roles, r.name))
      throw new TrustedMsError('INVALID_INPUT', `${where}: duplicate role ${r.name}`);
    if (!Array.isArray(r.grants))
      throw new TrustedMsError('INVALID_INPUT', `${where}: grants must be an array`);
    for (const g of r.grants) {
      if (typeof g?.database !== 'string' || g.database === '') {
        throw new TrustedMsError('INVALID_INPUT', `${where}: every grant needs a database`);
      }
      if (knownDatabases && g.database !== '*' && !knownDatabases.has(g.database)) {
        throw new TrustedMsError('INVALID_INPUT', `${where}: unknown database ${g.database}`);
      }
      if (!Array.isArray(g.actions) || g.actions.some((a) => !ACTIONS.includes(a))) {
        throw new TrustedMsError('INVALID_INPUT', `${where}: actions must be among ${ACTIONS.join(', ')}`);
      }
    }
    roles[r.name] = { name: r.name, description: String(r.description ?? ''), grants: r.grants };
  }
  return roles;
}

/** The lab's default roles, from `fixtures/roles.json`. */
export function defaultRoles(): Record<string, Role> {
  return parseRoles(JSON.parse(readFileSync(fixturePath('roles.json'), 'utf8')));
}
