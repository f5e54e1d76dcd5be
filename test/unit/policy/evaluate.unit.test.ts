import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { evaluate, permissionsOf, permits } from '../../../src/policy/evaluate.js';
import { defaultRoles, parseRoles } from '../../../src/policy/roles.js';
import type { Role } from '../../../src/policy/types.js';

const roles = defaultRoles();
const topology = JSON.parse(readFileSync(new URL('../../../lab/topology.json', import.meta.url), 'utf8')) as {
  services: { databases: Record<string, unknown> }[];
};
const databases = new Set(topology.services.flatMap((s) => Object.keys(s.databases)));

describe('evaluate', () => {
  it('lets admin do everything through the * grant', () => {
    for (const db of databases) expect(evaluate(roles.admin, db, 'write')).toEqual({ allowed: true });
  });

  it('lets an analyst query orders but not write them', () => {
    expect(evaluate(roles.analyst, 'orders', 'query')).toEqual({ allowed: true });
    expect(evaluate(roles.analyst, 'orders', 'write')).toEqual({
      allowed: false,
      reason: 'action-not-granted',
    });
  });

  it('refuses a database outside the role', () => {
    expect(evaluate(roles.analyst, 'salaries', 'read')).toEqual({
      allowed: false,
      reason: 'no-grant-for-database',
    });
    expect(evaluate(roles.guest, 'customers', 'read')).toEqual({
      allowed: false,
      reason: 'no-grant-for-database',
    });
  });

  it('refuses an unknown role', () => {
    expect(evaluate(undefined, 'catalog', 'read')).toEqual({ allowed: false, reason: 'unknown-role' });
  });

  it('merges several grants for one database', () => {
    const role: Role = {
      name: 'x',
      description: '',
      grants: [
        { database: 'a', actions: ['read'] },
        { database: 'a', actions: ['write'] },
      ],
    };
    expect(evaluate(role, 'a', 'write')).toEqual({ allowed: true });
    expect(permissionsOf(role)).toEqual({ a: ['read', 'write'] });
  });

  it('agrees with permits() on the flattened form for every role, database and action', () => {
    for (const role of Object.values(roles)) {
      const flat = permissionsOf(role);
      for (const db of databases) {
        for (const action of ['read', 'query', 'write'] as const) {
          expect(permits(flat, db, action), `${role.name} ${db} ${action}`).toBe(
            evaluate(role, db, action).allowed,
          );
        }
      }
    }
  });
});

describe('roles', () => {
  it('ships the default roles, granting only databases of the topology', () => {
    expect(Object.keys(roles).sort()).toEqual(['admin', 'analyst', 'clerk', 'guest', 'hr']);
    const doc = JSON.parse(readFileSync(new URL('../../../fixtures/roles.json', import.meta.url), 'utf8'));
    expect(() => parseRoles(doc, databases)).not.toThrow();
    expect(databases.size).toBe(20);
  });

  it.each([
    [{}, /roles/],
    [{ roles: [{ name: 'Bad Name', grants: [] }] }, /name/],
    [
      {
        roles: [
          { name: 'a', grants: [] },
          { name: 'a', grants: [] },
        ],
      },
      /duplicate/,
    ],
    [{ roles: [{ name: 'a', grants: [{ database: 'orders', actions: ['delete'] }] }] }, /actions/],
    [{ roles: [{ name: 'a', grants: [{ database: 'nope', actions: ['read'] }] }] }, /unknown database/],
  ])('refuses a bad roles document %#', (doc, message) => {
    expect(() => parseRoles(doc, databases)).toThrow(message);
    try {
      parseRoles(doc, databases);
    } catch (err) {
      expect(err).toMatchObject({ code: 'INVALID_INPUT' });
    }
  });
});
