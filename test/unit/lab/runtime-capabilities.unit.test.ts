import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Dockerode from 'dockerode';
import { afterEach, describe, expect, it } from 'vitest';
import { isTrustedMsError } from '../../../src/errors.js';
import type { PartState } from '../../../src/kernel/lab-state.js';
import { DockerRuntime } from '../../../src/lab/runtimes/docker/docker-runtime.js';
import { edgeNetworkOf } from '../../../src/lab/runtimes/edge.js';
import { ProcessRuntime } from '../../../src/lab/runtimes/process.js';

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

describe('optional runtime capabilities', () => {
  it('the edge network: the Docker runtime has one; asking the process runtime is a clear error', () => {
    // Constructing a Dockerode client opens no connection: no engine is needed here.
    const docker = new DockerRuntime(new Dockerode({ socketPath: '/nonexistent.sock' }));
    expect(edgeNetworkOf(docker, 'a flood')).toBe(docker.edge);

    let caught: unknown;
    try {
      edgeNetworkOf(new ProcessRuntime(), '`lab load --client-containers`');
    } catch (e) {
      caught = e;
    }
    expect(isTrustedMsError(caught) && caught.code).toBe('RUNTIME_UNSUPPORTED');
    expect((caught as Error).message).toContain('`lab load --client-containers`');
    expect((caught as Error).message).toContain('process runtime');
  });

  it("the process runtime follows a part's log: its last lines, then what is appended, until aborted", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tms-follow-'));
    dirs.push(dir);
    const logFile = join(dir, 'orders.log');
    await writeFile(logFile, 'one\ntwo\nthree\n');
    const part = { name: 'orders', logFile } as PartState;
    const seen: string[] = [];
    const stop = new AbortController();
    const following = new ProcessRuntime().followLog(part, 2, (c) => seen.push(c), stop.signal);
    await expect.poll(() => seen.join('')).toBe('two\nthree\n');
    await appendFile(logFile, 'four\n');
    await expect.poll(() => seen.join(''), { timeout: 5000 }).toBe('two\nthree\nfour\n');
    stop.abort();
    await following;
  });
});
