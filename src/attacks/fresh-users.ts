import { randomBytes } from 'node:crypto';
import { openUserAdmin } from '../users/admin.js';
import { labHome } from './lab-home.js';
import type { ScenarioContext } from './types.js';

export interface FreshUser {
  name: string;
  role: string;
  password: string;
}

/**
 * Users who have not logged in yet, for scenarios that measure logins: in `none` the gateway
 * remembers a checked password for 60 s, so the victim's own repeated logins would measure that
 * cache, not the password check every arriving user waits for. Kept in `ctx.scratch.fresh`; a user
 * of the same name left by an interrupted run is replaced.
 */
export async function addFreshUsers(
  ctx: ScenarioContext,
  prefix: string,
  count: number,
): Promise<FreshUser[]> {
  const admin = await openUserAdmin(await labHome(ctx.lab));
  const users = Array.from({ length: count }, (_, i) => ({
    name: `${prefix}-${i}`,
    role: 'analyst',
    password: randomBytes(12).toString('base64url'),
  }));
  ctx.scratch.fresh = users;
  for (const u of users) {
    await admin.removeUser(u.name).catch(() => undefined);
    await admin.addUser(u);
  }
  return users;
}

/** The fresh users `addFreshUsers` made for this scenario, or none. */
export function freshUsers(ctx: ScenarioContext): FreshUser[] {
  return (ctx.scratch.fresh as FreshUser[] | undefined) ?? [];
}

/** Removes them (the revert); nothing to do when none were made. */
export async function removeFreshUsers(ctx: ScenarioContext): Promise<void> {
  const fresh = ctx.scratch.fresh as FreshUser[] | undefined;
  if (fresh === undefined) return;
  const admin = await openUserAdmin(await labHome(ctx.lab));
  await Promise.all(fresh.map((u) => admin.removeUser(u.name).catch(() => undefined)));
  ctx.scratch.fresh = undefined;
}
