import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Role } from '../../../src/policy/types.js';
import { FileLabStore } from '../../../src/store/file-lab-store.js';
import { STORE_SCHEMA_VERSION } from '../../../src/store/schema.js';

let home: string;
beforeEach(async () => {
  home = await mkdtemp(join(tmpdir(), 'tms-store-'));
});
afterEach(async () => {
  await rm(home, { recursive: true, force: true });
});

const roles = (): Record<string, Role> => ({
  reader: { name: 'reader', description: 'reads', grants: [{ database: 'catalog', actions: ['read'] }] },
});
const fixedClock = () => new Date('2030-01-02T03:04:05.000Z');

describe('LabStore', () => {
  it('starts empty by default', async () => {
    const data = await new FileLabStore(home).data();
    expect(data).toEqual({ schemaVersion: STORE_SCHEMA_VERSION, users: {}, roles: {}, services: {} });
  });

  it('seeds the roles of a new store, once', async () => {
    let calls = 0;
    const store = new FileLabStore(home, {
      seedRoles: () => {
        calls++;
        return roles();
      },
    });
    await store.update((d) => {
      delete d.roles.reader;
    });
    // The file exists now: the seed is not applied again.
    expect((await store.data()).roles).toEqual({});
    expect(calls).toBeGreaterThanOrEqual(1);
  });

  it('keeps the audit log in its own file, stamped by the injected clock', async () => {
    const store = new FileLabStore(home, { now: fixedClock, seedRoles: roles });
    await store.update(() => undefined);
    const storeBytes = await readFile(join(home, 'store.json'));
    await store.audit({ actor: 'cli', action: 'test.one', outcome: 'ok' });
    await store.audit({
      actor: 'cli',
      action: 'test.two',
      target: 'x',
      outcome: 'denied',
      code: 'AUTH_FAILED',
      at: 'explicit',
    });
    expect(await store.auditEntries()).toEqual([
      { at: '2030-01-02T03:04:05.000Z', actor: 'cli', action: 'test.one', outcome: 'ok' },
      {
        at: 'explicit',
        actor: 'cli',
        action: 'test.two',
        target: 'x',
        outcome: 'denied',
        code: 'AUTH_FAILED',
      },
    ]);
    expect(await readFile(join(home, 'store.json'))).toEqual(storeBytes);
    expect(store.auditFile).toBe(join(home, 'audit.jsonl'));
  });

  it('refuses a corrupt legacy audit log (schema 1) without touching it, while the store still works', async () => {
    await mkdir(home, { recursive: true });
    await writeFile(join(home, 'audit.json'), '{"schemaVersion":1,"entries":[{"at":1}]}');
    const store = new FileLabStore(home, { seedRoles: roles });
    await expect(store.audit({ actor: 'cli', action: 'x', outcome: 'ok' })).rejects.toMatchObject({
      code: 'STORE_CORRUPT',
      message: expect.stringMatching(/audit\.json.*entries\[0\]\.at/),
    });
    expect(await readFile(join(home, 'audit.json'), 'utf8')).toBe('{"schemaVersion":1,"entries":[{"at":1}]}');
    expect(Object.keys((await store.data()).roles)).toEqual(['reader']);
  });

  it('refuses an audit entry with an unknown outcome on read', async () => {
    await writeFile(
      join(home, 'audit.json'),
      '{"schemaVersion":1,"entries":[{"at":"t","actor":"a","action":"b","outcome":"maybe"}]}',
    );
    await expect(new FileLabStore(home).auditEntries()).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
  });
});
