import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { authHeaders, callService } from '../../../src/client/call.js';
import { labDir, readLabState } from '../../../src/kernel/lab-state.js';
import { labDown } from '../../../src/lab/down.js';
import { ProcessRuntime, processesOfLab } from '../../../src/lab/runtimes/process.js';
import { labStatus } from '../../../src/lab/status.js';
import { DEFAULT_BACKOFF } from '../../../src/lab/supervisor/backoff.js';
import { DEFAULT_POOL_OPTIONS } from '../../../src/services/gateway/upstream.js';
import { cliJson } from '../../support/cli.js';
import { startLab } from '../../support/lab.js';
import { partNamed, waitFor } from './wait.js';

/** Refused at once, or not: a port nothing listens on any more. */
function listens(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}

/**
 * A service killed with SIGKILL while a user keeps calling the lab (trusted, process runtime): the
 * gateway refuses calls to it at once with 503 SERVICE_DOWN (a refused connection, not a hang, a
 * 500 or a 502), the other services keep answering, `lab status` shows it down, and the lab's
 * watchman brings it back by itself, measured again before it serves. `lab down` then leaves no
 * process and no listening port behind, the restarted one included.
 */
describe('kill -9 of a service under load', () => {
  it('503 SERVICE_DOWN at once, the others serve, status shows it, the watchman restarts it', async () => {
    await using lab = await startLab('trusted', 3);
    const gatewayUrl = lab.state.gatewayUrl;
    const session = await lab.login('alice');
    const runtime = new ProcessRuntime();
    const victim = partNamed(lab.state, 'catalog');
    const victimPath = '/svc/catalog/db/catalog/records';
    const callVictim = async (): Promise<{ status: number; code?: string }> => {
      // The client's own deadline is the gateway's connect timeout: an answer that waited on a
      // connection nobody accepts would not arrive before it.
      const res = await request(`${gatewayUrl}${victimPath}`, {
        headers: authHeaders(session, 'GET', victimPath, undefined),
        headersTimeout: DEFAULT_POOL_OPTIONS.connectTimeout,
        bodyTimeout: DEFAULT_POOL_OPTIONS.connectTimeout,
      });
      const body = (await res.body.json().catch(() => ({}))) as { code?: string };
      return { status: res.statusCode, ...(body.code ? { code: body.code } : {}) };
    };
    expect((await callVictim()).status).toBe(200);

    // the load: two users' worth of calls to the other services, all along
    let loading = true;
    const others: number[] = [];
    const load = [
      ['accounts', '/db/accounts/records'],
      ['customers', '/db/customers/records'],
    ].map(async ([service, path]) => {
      while (loading) {
        others.push(
          (await callService(session, { gatewayUrl, service: service as string, path: path as string }))
            .status,
        );
      }
    });
    let othersWhileDown = 0;
    try {
      await waitFor('the load to start', 10_000, async () => (others.length >= 4 ? true : undefined));

      process.kill(victim.pid as number, 'SIGKILL');
      await waitFor('the victim to die', 5_000, async () =>
        (await runtime.isAlive(victim)) ? undefined : true,
      );
      const down = await labStatus(lab.home);
      const whileDown = [await callVictim(), await callVictim(), await callVictim()];
      expect(down.parts.find((p) => p.name === 'catalog')).toMatchObject({ alive: false, restarts: 0 });
      expect(whileDown).toEqual(Array(3).fill({ status: 503, code: 'SERVICE_DOWN' }));
      othersWhileDown = others.length;

      // back by itself: after the first backoff, and its start-up
      const back = await waitFor(
        'the watchman to restart catalog',
        DEFAULT_BACKOFF.baseMs + 30_000,
        async () => ((await callVictim().catch(() => ({ status: 0 }))).status === 200 ? true : undefined),
      );
      expect(back).toBe(true);
    } finally {
      loading = false;
      await Promise.all(load);
    }
    expect(others.length).toBeGreaterThan(othersWhileDown);
    expect(others.filter((s) => s !== 200)).toEqual([]);

    const status = await cliJson<{
      result: {
        parts: { name: string; alive: boolean; restarts: number; pid: number; attestation?: string }[];
      };
    }>(lab, ['lab', 'status', '--home', lab.home]);
    expect(status.exitCode).toBe(0);
    const catalog = status.json.result.parts.find((p) => p.name === 'catalog');
    expect(catalog).toMatchObject({ alive: true, restarts: 1, attestation: 'trusted' });
    expect(catalog?.pid).not.toBe(victim.pid);
    const log = await readFile(partNamed(lab.state, 'supervisor').logFile, 'utf8');
    expect(log).toMatch(/catalog measured before restart: trusted/);

    // lab down stops everything, the restarted process too
    const before = (await readLabState(lab.home))?.parts ?? [];
    await labDown(lab.home);
    for (const p of [...before, victim])
      expect(await runtime.isAlive(p), `${p.name} pid ${p.pid}`).toBe(false);
    for (const p of before.filter((p) => p.port > 0))
      expect(await listens(p.port), `${p.name} port ${p.port}`).toBe(false);
    // nor any other process started with one of this lab's part configs
    expect(await processesOfLab(join(labDir(lab.home), 'parts'))).toEqual([]);
  }, 120_000);
});
