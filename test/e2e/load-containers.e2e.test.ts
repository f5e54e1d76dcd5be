import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type Dockerode from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DockerRuntime } from '../../src/lab/runtimes/docker/docker-runtime.js';
import { connectEngine, LABEL } from '../../src/lab/runtimes/docker/engine.js';
import { labLoad } from '../../src/load/lab-load.js';
import { type RunningLab, startLab } from '../support/lab.js';

/*
 * `lab load --client-containers`: the virtual users in containers of their own on the lab's edge
 * network. Skipped loudly without an engine (docker.e2e.test.ts fails instead under CI).
 */
const engine = await connectEngine();
if (!engine && process.env.CI !== 'true') {
  console.warn('\n!!! SKIPPED: lab load with client containers (no Docker engine answers).\n');
}

const N = 3;

describe.runIf(engine)('lab load with client containers on a Docker lab', () => {
  const docker = engine as Dockerode;
  let lab: RunningLab;

  beforeAll(async () => {
    lab = await startLab('trusted', 3, new DockerRuntime(docker));
  }, 240_000);
  afterAll(async () => {
    await lab?.[Symbol.asyncDispose]();
  }, 60_000);

  it('logs each client in from its own container address, sends through the gateway, and the figures add up', async () => {
    const steps: string[] = [];
    const r = await labLoad({
      home: lab.home,
      clients: N,
      clientContainers: true,
      durationMs: 2000,
      onStep: (line) => steps.push(line),
    });
    expect(r.clients).toBe(N);
    expect(r.logins).toMatchObject({ attempted: N, ok: N, errors: {} });
    expect(r.requests).toBeGreaterThan(0);
    // One merged histogram: its count is every request, the services' counts add up to it.
    expect(r.latencyMs.count).toBe(r.requests);
    expect(r.services.reduce((n, s) => n + s.requests, 0)).toBe(r.requests);
    expect(r.ok + Object.values(r.errors).reduce((n, x) => n + x, 0)).toBe(r.requests);
    expect(r.ok).toBeGreaterThan(0);
    expect(r.logins.latencyMs.count).toBe(N);
    expect(r.clientContainers).toMatchObject({ count: N });
    expect(r.clientContainers?.memoryMiB.mean ?? 0).toBeGreaterThan(0);
    expect(steps.some((s) => s.includes(`${N}/${N} client containers started`))).toBe(true);

    // The lab saw N clients at N addresses of its edge network, none of them this host's: the
    // security service records the client address the gateway vouched for with each login.
    const edge = await docker.getNetwork(`tms-${lab.state.labId}-edge`).inspect();
    const subnet = edge.IPAM?.Config?.[0]?.Subnet as string;
    const audit = (await readFile(join(lab.home, 'audit.jsonl'), 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { actor: string; action: string; target?: string; outcome: string });
    const logins = audit.filter((e) => e.action === 'auth.verify' && e.target?.startsWith('load-'));
    expect(logins).toHaveLength(N);
    const actors = new Set(logins.map((e) => e.actor));
    expect(actors.size).toBe(N);
    const prefix = subnet.split('.').slice(0, 2).join('.');
    for (const a of actors) expect(a.startsWith(`${prefix}.`), `${a} in ${subnet}`).toBe(true);

    // Everything made for the run is gone: its users and its containers.
    expect(r.users).toEqual({ created: N, removed: N });
    const left = await docker.listContainers({
      all: true,
      filters: { label: [`${LABEL.lab}=${lab.state.labId}`] },
    });
    expect(left.filter((c) => (c.Labels[LABEL.part] ?? '').startsWith('load-client-'))).toEqual([]);
  });

  it('refuses --client-containers beyond its bound, with a code', async () => {
    await expect(
      labLoad({ home: lab.home, clients: 301, clientContainers: true, durationMs: 1000 }),
    ).rejects.toMatchObject({ code: 'INVALID_INPUT' });
  });
});
