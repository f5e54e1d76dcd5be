import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { wantedStore } from '../../../src/lab/lab-store.js';
import { writeStoreBackend } from '../../../src/store/backend.js';

let home: string;
beforeEach(async () => {
  home = await mkdtemp(join(tmpdir(), 'tms-labstore-'));
});
afterEach(async () => {
  await rm(home, { recursive: true, force: true });
});

describe('the store a lab up uses', () => {
  it('is the files of the home unless chosen', () => {
    expect(wantedStore(home, undefined, 'process')).toEqual({ kind: 'lowdb' });
    expect(wantedStore(home, { kind: 'postgres' }, 'process')).toEqual({ kind: 'postgres' });
  });

  it("follows the home's last choice: the lab's own server, or the URL it was given", async () => {
    await writeStoreBackend(home, {
      kind: 'postgres',
      url: 'postgres://trusted_ms@127.0.0.1:5999/postgres',
      managed: { clusterDir: '/x', osUser: 'postgres' },
    });
    expect(wantedStore(home, undefined, 'process')).toEqual({ kind: 'postgres' });
    await writeStoreBackend(home, { kind: 'postgres', url: 'postgres://u:p@db:5432/tms' });
    expect(wantedStore(home, undefined, 'process')).toEqual({
      kind: 'postgres',
      url: 'postgres://u:p@db:5432/tms',
    });
    expect(wantedStore(home, { kind: 'lowdb' }, 'process')).toEqual({ kind: 'lowdb' });
  });

  it('refuses postgres on the Docker runtime (not built yet) with RUNTIME_UNSUPPORTED, chosen or remembered', async () => {
    expect(() => wantedStore(home, { kind: 'postgres' }, 'docker')).toThrow(
      expect.objectContaining({ code: 'RUNTIME_UNSUPPORTED', message: expect.stringMatching(/not built/) }),
    );
    await writeStoreBackend(home, { kind: 'postgres', url: 'postgres://u@db/tms' });
    expect(() => wantedStore(home, undefined, 'docker')).toThrow(
      expect.objectContaining({ code: 'RUNTIME_UNSUPPORTED' }),
    );
    expect(wantedStore(home, { kind: 'lowdb' }, 'docker')).toEqual({ kind: 'lowdb' });
  });
});
