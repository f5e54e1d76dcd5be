import { join } from 'node:path';
import type Dockerode from 'dockerode';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DockerRuntime } from '../../src/lab/runtimes/docker/docker-runtime.js';
import { connectEngine, LABEL } from '../../src/lab/runtimes/docker/engine.js';
import { openLabStore } from '../../src/store/open.js';
import { cli, repoRoot } from '../support/cli.js';
import { type RunningLab, startLab } from '../support/lab.js';

/*
 * `lab load --client-containers` killed, for real: the built CLI as a child process on a Docker lab
 * of this test's own (its containers found by its lab id only), signalled once its client
 * containers run. Skipped loudly without an engine (docker.e2e.test.ts fails instead under CI).
 */
const engine = await connectEngine();
if (!engine && process.env.CI !== 'true') {
  console.warn('\n!!! SKIPPED: lab load --client-containers killed (no Docker engine answers).\n');
}

describe.runIf(engine)('lab load --client-containers killed', () => {
  const docker = engine as Dockerode;
  let lab: RunningLab;

  beforeAll(async () => {
    lab = await startLab('trusted', 2, new DockerRuntime(docker));
  }, 240_000);
  afterAll(async () => {
    await lab?.[Symbol.asyncDispose]();
  }, 120_000);

  const clientContainers = async () =>
    (
      await docker.listContainers({ all: true, filters: { label: [`${LABEL.lab}=${lab.state.labId}`] } })
    ).filter((c) => /^load-client-\d+$/.test(c.Labels[LABEL.part] ?? ''));
  const loadUsers = async () =>
    Object.keys((await openLabStore(lab.home).data()).users).filter((u) => u.startsWith('load-'));
  async function until(what: string, check: () => Promise<boolean>, ms = 180_000): Promise<void> {
    for (const end = Date.now() + ms; Date.now() < end; ) {
      if (await check()) return;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`timed out waiting for ${what}`);
  }
  /** `lab load` with two client containers for a minute, once they all run. */
  async function loadRunning(): Promise<{ run: ResultPromise }> {
    const run = execa(
      process.execPath,
      [join(repoRoot, 'bin', 'run.js'), 'lab', 'load', '--client-containers', '2', '--duration', '60s'],
      { reject: false, env: { TRUSTED_MS_HOME: lab.home, NO_COLOR: '1', DEBUG: '' } },
    );
    await until('two client containers running', async () => {
      if (run.exitCode !== undefined && run.exitCode !== null)
        throw new Error(`lab load exited: ${run.exitCode}`);
      return (await clientContainers()).filter((c) => c.State === 'running').length === 2;
    });
    expect(await loadUsers()).toHaveLength(2);
    // Wrapped: an async function returning the child (a thenable) would wait for it to exit.
    return { run };
  }

  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    it(`${signal}: its client containers and load users are removed at once, exit ${code}`, async () => {
      const { run } = await loadRunning();
      const t0 = Date.now();
      run.kill(signal);
      const r = await run;
      expect(r.exitCode, String(r.stderr)).toBe(code);
      // At once: not after the minute of load it was asked for.
      expect(Date.now() - t0).toBeLessThan(30_000);
      expect(String(r.stderr)).toMatch(new RegExp(`${signal}: cleaning up`));
      expect(await clientContainers()).toEqual([]);
      expect(await loadUsers()).toEqual([]);
    }, 300_000);
  }

  it('SIGKILL: they stay; the next `lab down` removes them', async () => {
    const { run } = await loadRunning();
    run.kill('SIGKILL');
    await run;
    expect((await clientContainers()).length).toBeGreaterThan(0);
    expect(await loadUsers()).toHaveLength(2);
    const down = await cli({ home: lab.home, keys: lab.keys }, ['lab', 'down'], { timeoutMs: 120_000 });
    expect(down.exitCode, down.stderr).toBe(0);
    expect(down.stdout).toMatch(/Cleaned up \(killed load run\): removed 2 load user\(s\) load-[0-9a-f]+-\*/);
    expect(await clientContainers()).toEqual([]);
    expect(await loadUsers()).toEqual([]);
  }, 300_000);
});
