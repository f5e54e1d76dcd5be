import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import type { LabStoreState } from '../../../src/kernel/lab-state.js';
import { freePorts } from '../../../src/lab/ports.js';
import { cli, cliJson, tempLab } from '../../support/cli.js';
import { requirePostgresOrSkip } from '../../support/postgres.js';

const run = requirePostgresOrSkip('the lab on its own PostgreSQL');

type Envelope<T> = { status: number; result: T; error?: { code: string; message: string } };
type PostgresState = Extract<LabStoreState, { kind: 'postgres' }>;

/** Every process whose command line names `text` (the cluster's folder: its postmaster and children). */
async function processesNaming(text: string): Promise<string[]> {
  const ps = await execa('ps', ['-eo', 'pid=,args='], { reject: false });
  return String(ps.stdout)
    .split('\n')
    .filter((l) => l.includes(text));
}

describe.runIf(run).sequential('a process lab on PostgreSQL (lab up --store postgres)', () => {
  it('starts its own server, serves a user added, logged in and calling through the gateway; lab down stops it, the data stays, --purge drops it', async () => {
    await using lab = await tempLab();
    try {
      const up = await cliJson<Envelope<{ state: { store: PostgresState } }>>(lab, [
        'lab',
        'up',
        '--posture',
        'trusted',
        '--store',
        'postgres',
        '--services',
        '2',
        '--runtime',
        'process',
      ]);
      expect(up.exitCode, up.stderr).toBe(0);
      const store = up.json.result.state.store;
      expect(store).toMatchObject({ kind: 'postgres', server: { pid: expect.any(Number) } });
      expect(store.where).toMatch(/^postgres:\/\/trusted_ms@127\.0\.0\.1:\d+\/postgres$/);
      const clusterDir = store.server?.clusterDir as string;
      expect(await processesNaming(clusterDir)).not.toEqual([]);

      const status = await cliJson<Envelope<{ store: PostgresState }>>(lab, ['lab', 'status']);
      expect(status.json.result.store).toEqual(store);

      const add = await cli(lab, ['user', 'add', 'alice', '--role', 'admin', '--password-stdin'], {
        input: 'alice-pw\n',
      });
      expect(add.exitCode, add.stderr).toBe(0);
      expect((await cli(lab, ['user', 'keygen', 'alice'])).exitCode).toBe(0);
      const login = await cli(lab, ['user', 'login', 'alice', '--password-stdin'], { input: 'alice-pw' });
      expect(login.exitCode, login.stderr).toBe(0);
      const call = await cli(lab, ['call', 'accounts', '/db/accounts/records', '--as', 'alice']);
      expect(call.exitCode, call.stderr).toBe(0);

      // The users and the audit log are in the database, not in the home's files.
      expect(existsSync(join(lab.home, 'store.json'))).toBe(false);
      expect(existsSync(join(lab.home, 'audit.jsonl'))).toBe(false);
      const verify = await cliJson<Envelope<{ ok: boolean; entries: number; file: string }>>(lab, [
        'audit',
        'verify',
      ]);
      expect(verify.json.result).toMatchObject({ ok: true, file: expect.stringMatching(/audit_log/) });
      expect(verify.json.result.entries).toBeGreaterThanOrEqual(3);
      // The lab role's password: in a 0600 file, not on any command line.
      const password = (await readFile(join(lab.home, 'postgres-password'), 'utf8')).trim();
      expect(password.length).toBeGreaterThanOrEqual(20);
      expect(await processesNaming(password)).toEqual([]);

      const down = await cliJson<Envelope<{ stopped: string[]; purged: string[] }>>(lab, ['lab', 'down']);
      expect(down.exitCode, down.stderr).toBe(0);
      expect(down.json.result.stopped).toContain('postgres');
      expect(await processesNaming(clusterDir)).toEqual([]);
      // Down, the store has no server: the CLI says so with its code, no stack.
      const offline = await cliJson<Envelope<unknown>>(lab, ['user', 'list']);
      expect(offline.exitCode).toBe(6);
      expect(offline.json.error?.code).toBe('STORE_UNAVAILABLE');
      expect(offline.stderr).not.toMatch(/\n\s+at /);

      // The next lab up (no --store: the home's choice) finds alice in the same database.
      const again = await cliJson<Envelope<{ state: { store: PostgresState } }>>(lab, [
        'lab',
        'up',
        '--posture',
        'none',
        '--services',
        '2',
        '--runtime',
        'process',
      ]);
      expect(again.exitCode, again.stderr).toBe(0);
      expect(again.json.result.state.store.kind).toBe('postgres');
      expect((await cli(lab, ['user', 'show', 'alice'])).exitCode).toBe(0);

      const purge = await cliJson<Envelope<{ stopped: string[]; purged: string[] }>>(lab, [
        'lab',
        'down',
        '--purge',
      ]);
      expect(purge.exitCode, purge.stderr).toBe(0);
      expect(purge.json.result.stopped).toContain('postgres');
      expect(purge.json.result.purged).toContain(clusterDir);
      expect(existsSync(clusterDir)).toBe(false);
      expect(existsSync(join(lab.home, 'store-backend.json'))).toBe(false);
      expect(await processesNaming(clusterDir)).toEqual([]);
    } finally {
      await cli(lab, ['lab', 'down', '--purge']);
    }
  }, 240_000);

  it('--store-url: a server that does not answer fails lab up with STORE_UNAVAILABLE (exit 6) before any part starts', async () => {
    await using lab = await tempLab();
    const [port] = (await freePorts(1)) as [number];
    const up = await cliJson<Envelope<unknown>>(lab, [
      'lab',
      'up',
      '--runtime',
      'process',
      '--services',
      '1',
      '--store',
      'postgres',
      '--store-url',
      `postgres://someone:hunter2-secret@127.0.0.1:${port}/db`,
    ]);
    expect(up.exitCode).toBe(6);
    expect(up.json.error?.code).toBe('STORE_UNAVAILABLE');
    expect(JSON.stringify(up.json)).not.toMatch(/hunter2-secret/);
    expect(up.stderr).not.toMatch(/hunter2-secret/);
    expect(existsSync(join(lab.home, 'lab', 'state.json'))).toBe(false);
    await cli(lab, ['lab', 'down', '--purge']);
  });
});
