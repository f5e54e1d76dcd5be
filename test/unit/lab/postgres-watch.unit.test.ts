import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import type { LabStoreState } from '../../../src/kernel/lab-state.js';
import { RestartBackoff } from '../../../src/lab/supervisor/backoff.js';
import { LabPostgresWatch, POSTGRES_WATCH_NAME } from '../../../src/lab/supervisor/postgres-watch.js';
import type { RestartRecord } from '../../../src/lab/supervisor/restarts.js';

/** A PID that was a process and is not any more. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  await new Promise((resolve) => child.on('exit', resolve));
  return child.pid as number;
}

const labServer = (pid: number): LabStoreState => ({
  kind: 'postgres',
  where: 'postgres://trusted_ms@127.0.0.1:41235/postgres',
  server: { pid, clusterDir: '/var/lib/postgresql/trusted-ms/abc' },
});

describe("the watchman's eye on the lab's own PostgreSQL", () => {
  it('a dead server is started again after the back-off, on its cluster and port, and counted', async () => {
    const starts: [string, number][] = [];
    const lines: string[] = [];
    const watch = new LabPostgresWatch(
      new RestartBackoff(),
      (l) => lines.push(l),
      async (dir, port) => {
        starts.push([dir, port]);
        return 4242;
      },
    );
    const record: RestartRecord = {};
    const store = labServer(await deadPid());
    expect(await watch.round(store, record, 0)).toBeUndefined();
    expect(await watch.round(store, record, 999)).toBeUndefined();
    expect(starts).toEqual([]);
    expect(await watch.round(store, record, 1000)).toBe(4242);
    expect(starts).toEqual([['/var/lib/postgresql/trusted-ms/abc', 41235]]);
    expect(record[POSTGRES_WATCH_NAME]).toMatchObject({ restarts: 1 });
    expect(lines.join('\n')).toMatch(
      /postgres died .*restarting in 1000 ms[\s\S]*postgres restarted \(pid 4242/,
    );
  });

  it('a live server, a server given by --store-url and the files are left alone', async () => {
    const watch = new LabPostgresWatch(
      new RestartBackoff(),
      () => undefined,
      async () => {
        throw new Error('must not start');
      },
    );
    const record: RestartRecord = {};
    expect(await watch.round(labServer(process.pid), record, 0)).toBeUndefined();
    expect(await watch.round(labServer(process.pid), record, 60_000)).toBeUndefined();
    const external: LabStoreState = { kind: 'postgres', where: 'postgres://u@db:5432/tms' };
    expect(await watch.round(external, record, 0)).toBeUndefined();
    expect(await watch.round({ kind: 'lowdb' }, record, 0)).toBeUndefined();
    expect(record).toEqual({});
  });

  it('a start that fails is tried again later, and given up after five in a row', async () => {
    let tries = 0;
    const watch = new LabPostgresWatch(
      new RestartBackoff(),
      () => undefined,
      async () => {
        tries += 1;
        throw new Error('pg_ctl: could not start server');
      },
    );
    const record: RestartRecord = {};
    const store = labServer(await deadPid());
    for (let t = 0; t < 200_000 && !record[POSTGRES_WATCH_NAME]?.gaveUp; t += 500)
      await watch.round(store, record, t);
    expect(tries).toBe(5);
    expect(record[POSTGRES_WATCH_NAME]).toMatchObject({ gaveUp: true });
  });
});
