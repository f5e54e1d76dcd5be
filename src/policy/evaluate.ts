import type { Action, Role } from './types.js';

export type Decision =
  | { allowed: true }
  | { allowed: false; reason: 'unknown-role' | 'no-grant-for-database' | 'action-not-granted' };

/**
 * Whether `role` may perform `action` on `database`. Pure: the same inputs always give the same
 * answer, so every service can run it on the role carried in a ticket without asking anyone.
 */
export function evaluate(role: Role | undefined, database: string, action: Action): Decision {
  if (role === undefined) return { allowed: false, reason: 'unknown-role' };
  const grants = role.grants.filter((g) => g.database === database || g.database === '*');
  if (grants.length === 0) return { allowed: false, reason: 'no-grant-for-database' };
  return grants.some((g) => g.actions.includes(action))
    ? { allowed: true }
    : { allowed: false, reason: 'action-not-granted' };
}

/** A role flattened to database → actions, the form a session ticket carries. */
export function permissionsOf(role: Role): Record<string, Action[]> {
  const out: Record<string, Set<Action>> = {};
  for (const grant of role.grants) {
    const set = out[grant.database] ?? new Set<Action>();
    for (const action of grant.actions) set.add(action);
    out[grant.database] = set;
  }
  return Object.fromEntries(Object.entries(out).map(([db, set]) => [db, [...set].sort()]));
}

/** `evaluate` over the flattened form, for code that holds a ticket rather than a role. */
export function permits(
  permissions: Record<string, readonly Action[]>,
  database: string,
  action: Action,
): boolean {
  const has = (db: string): boolean =>
    Object.hasOwn(permissions, db) && (permissions[db]?.includes(action) ?? false);
  return has(database) || has('*');
}
