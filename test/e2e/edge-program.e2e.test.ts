import { join } from 'node:path';
import type Dockerode from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FloodJob, FloodMessage } from '../../src/attacks/flood.js';
import { FLOOD_PART, removeFloodContainers } from '../../src/attacks/flood-container.js';
import { DockerRuntime } from '../../src/lab/runtimes/docker/docker-runtime.js';
import { EdgeProgram, edgeUrlOf } from '../../src/lab/runtimes/docker/edge-program.js';
import { connectEngine, LABEL } from '../../src/lab/runtimes/docker/engine.js';
import { packageRoot } from '../../src/paths.js';
import { type RunningLab, startLab } from '../support/lab.js';

/*
 * The program-in-a-container mechanism the DoS attacker runs on (EdgeProgram): on the lab's edge
 * network, its input a 0600 file and never an argument, killed at the host's deadline, found and
 * removed by label. Skipped loudly without an engine (docker.e2e.test.ts fails instead under CI).
 */
const engine = await connectEngine();
if (!engine && process.env.CI !== 'true') {
  console.warn('\n!!! SKIPPED: edge programs on Docker (no Docker engine answers).\n');
}

describe.runIf(engine)('a program of the lab in a container of its own on the edge network', () => {
  const docker = engine as Dockerode;
  const runtime = new DockerRuntime(docker);
  let lab: RunningLab;
  const flood = join(packageRoot(), 'dist', 'lab', 'flood.mjs');
  const partsOf = async (labId: string) =>
    (
      await docker.listContainers({
        all: true,
        filters: { label: [`${LABEL.lab}=${labId}`, `${LABEL.part}=${FLOOD_PART}`] },
      })
    ).length;

  beforeAll(async () => {
    lab = await startLab('paper', 2, runtime);
  }, 240_000);
  afterAll(async () => {
    await lab?.[Symbol.asyncDispose]();
  }, 60_000);

  it('floods the gateway at its edge address from its own, with the session given as a 0600 file only', async () => {
    const session = await lab.login('bob');
    const origin = await edgeUrlOf(runtime, lab.state, 'gateway');
    const job: FloodJob = {
      origin,
      requests: 20,
      sendMs: 5000,
      durationMs: 5000,
      concurrency: 2,
      recipe: { kind: 'request', session, path: '/svc/customers/db/customers/records/cust-1' },
    };
    const seen: string[] = [];
    const program = await EdgeProgram.start(runtime, lab.state, {
      name: FLOOD_PART,
      program: flood,
      input: job,
      deadlineMs: 30_000,
      onMessage: (m) => seen.push(String(m.event)),
    });
    try {
      // Nothing of the session is in what the engine shows of the container.
      const info = await docker.getContainer(program.containerId).inspect();
      const shown = JSON.stringify([info.Config.Cmd, info.Config.Env, info.Args, info.Path]);
      expect(shown).not.toContain(session.ticket as string);
      expect(Object.keys(info.NetworkSettings.Networks)).toEqual([runtime.names(lab.state.labId).edge]);
      const exit = await program.exited;
      expect(exit).toMatchObject({ exitCode: 0, timedOut: false });
      const result = (exit.messages as FloodMessage[]).find((m) => m.event === 'result');
      // Bob (analyst) may not read customers: 403 from the service, through the gateway, 20 times.
      expect(result).toMatchObject({
        event: 'result',
        result: { sent: 20, byStatus: { 403: 20 }, noAnswer: 0, from: program.address, origin },
      });
      expect(seen).toEqual(['started', 'result']);
    } finally {
      await program.remove();
    }
    expect(await partsOf(lab.state.labId)).toBe(0);
  });

  it('is killed at the host deadline, whatever its own bound, and a left-over one is removed by label', async () => {
    const origin = await edgeUrlOf(runtime, lab.state, 'gateway');
    const job: FloodJob = {
      origin,
      requests: 20_000,
      sendMs: 10_000,
      durationMs: 10_000,
      concurrency: 1,
      recipe: { kind: 'login', login: 'paper' },
    };
    const program = await EdgeProgram.start(runtime, lab.state, {
      name: FLOOD_PART,
      program: flood,
      input: job,
      deadlineMs: 1500,
    });
    const exit = await program.exited;
    expect(exit.timedOut).toBe(true);
    expect(exit.messages.some((m) => m.event === 'result')).toBe(false);
    // Not removed by its user (a run cut short): the scenario's revert finds it by label.
    expect(await partsOf(lab.state.labId)).toBe(1);
    await removeFloodContainers(lab.state);
    expect(await partsOf(lab.state.labId)).toBe(0);
  });

  it('refuses to start without its program, leaving nothing behind', async () => {
    await expect(
      EdgeProgram.start(runtime, lab.state, {
        name: FLOOD_PART,
        program: join(packageRoot(), 'dist', 'lab', 'no-such-program.mjs'),
        input: {},
        deadlineMs: 1000,
      }),
    ).rejects.toMatchObject({ code: 'LAB_START_FAILED' });
    expect(await partsOf(lab.state.labId)).toBe(0);
  });
});
