import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type Dockerode from 'dockerode';
import { pack } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SCENARIOS } from '../../src/attacks/registry.js';
import { runAttacks } from '../../src/attacks/runner.js';
import { callService } from '../../src/client/call.js';
import type { PartState } from '../../src/kernel/lab-state.js';
import { verifyServices } from '../../src/lab/attest.js';
import { labDown } from '../../src/lab/down.js';
import { connectEngine, LABEL } from '../../src/lab/runtimes/docker/engine.js';
import { swarmState } from '../../src/lab/runtimes/swarm/membership.js';
import { SwarmRuntime } from '../../src/lab/runtimes/swarm/swarm-runtime.js';
import { labStatus } from '../../src/lab/status.js';
import { labLoad } from '../../src/load/lab-load.js';
import { type RunningLab, startLab } from '../support/lab.js';

/*
 * The lab on Docker Swarm (docs/swarm.md). Without an engine these tests are skipped, loudly;
 * under CI=true a missing engine is a failure, never a skip. They leave the engine as they found
 * it: a swarm the lab initialised is left again by `lab down`.
 */
const engine = await connectEngine();
const inCi = process.env.CI === 'true';
if (!engine && !inCi) {
  console.warn('\n!!! SKIPPED: the Swarm end-to-end tests (no Docker engine answers).\n');
}
describe.runIf(!engine && inCi)('the Swarm lab in CI', () => {
  it('needs a Docker engine', () => {
    throw new Error('CI=true but no Docker engine answers: the Swarm end-to-end tests must not be skipped');
  });
});

type Body = { code?: string };

/**
 * What a lab could leave in the engine: the swarm's state, every service and secret, and the
 * networks, containers and volumes that are no other lab's (labs of other runs on a shared engine
 * come and go meanwhile; this run's own are compared with the rest).
 */
async function engineSnapshot(docker: Dockerode) {
  const { state } = await swarmState(docker);
  const active = state === 'active';
  const notOtherLab = (labels: Record<string, string> | undefined, mine: Set<string>) => {
    const lab = labels?.[LABEL.lab];
    return lab === undefined || mine.has(lab);
  };
  const mine = new Set(ours);
  return {
    swarm: state,
    services: active ? (await docker.listServices()).map((s) => s.Spec?.Name).sort() : [],
    secrets: active ? (await docker.listSecrets()).map((s) => s.Spec?.Name).sort() : [],
    networks: (await docker.listNetworks())
      .filter((n) => notOtherLab(n.Labels, mine))
      .map((n) => n.Name)
      .sort(),
    containers: (await docker.listContainers({ all: true }))
      .filter((c) => notOtherLab(c.Labels, mine))
      .map((c) => c.Names[0])
      .sort(),
    volumes: ((await docker.listVolumes()).Volumes ?? [])
      .filter((v) => notOtherLab(v.Labels ?? undefined, mine))
      .map((v) => v.Name)
      .sort(),
    images: (await docker.listImages({ filters: { label: [`${LABEL.image}=code`] } }))
      .filter((i) => mine.has(i.Labels?.[LABEL.lab] ?? ''))
      .map((i) => i.Id),
  };
}
/** The lab ids this file started: their objects count as this run's in the snapshots. */
const ours: string[] = [];

/** A tar holding one file, `app/<name>`, for putArchive at /srv. */
function oneFileTar(name: string, content: Buffer): NodeJS.ReadableStream {
  const p = pack();
  p.entry({ name: `app/${name}`, mode: 0o644, mtime: new Date(0) }, content);
  p.finalize();
  return p as unknown as NodeJS.ReadableStream;
}

async function taskContainers(docker: Dockerode, part: PartState): Promise<Dockerode.ContainerInfo[]> {
  return docker.listContainers({
    filters: { label: [`com.docker.swarm.service.id=${part.swarmServiceId}`], status: ['running'] },
  });
}

async function waitFor<T>(probe: () => Promise<T>, check: (v: T) => boolean, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  let v = await probe();
  while (!check(v) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    v = await probe();
  }
  return v;
}

const pick = (ids: string[]) => SCENARIOS.filter((s) => ids.includes(s.id));
/** One of each kind, both ways: tampered code (measured in the task), a masquerade, a DoS. */
const BOTH_WAYS = ['malicious-service.tampered-code', 'masquerade.stolen-ticket', 'dos.login-flood'];

describe.runIf(engine)('the Swarm lab (trusted, 20 services)', () => {
  const docker = engine as Dockerode;
  const runtime = new SwarmRuntime(docker);
  let lab: RunningLab;
  let before: Awaited<ReturnType<typeof engineSnapshot>>;
  let upMs = 0;
  const part = (name: string): PartState => lab.state.parts.find((p) => p.name === name) as PartState;

  beforeAll(async () => {
    before = await engineSnapshot(docker);
    const t0 = Date.now();
    lab = await startLab('trusted', 20, runtime);
    upMs = Date.now() - t0;
    ours.push(lab.state.labId);
    console.log(`swarm e2e: lab up (trusted, 20 services) in ${(upMs / 1000).toFixed(1)} s`);
  }, 300_000);
  afterAll(async () => {
    await lab?.[Symbol.asyncDispose]();
  }, 120_000);

  it('runs the 20 services as labelled Swarm services (dnsrr, restart delay 0, files as secrets), the rest as containers', async () => {
    expect(lab.state.runtime).toBe('swarm');
    const services = await docker.listServices({ filters: { label: [`${LABEL.lab}=${lab.state.labId}`] } });
    expect(services).toHaveLength(20);
    for (const s of services) {
      expect(s.Spec?.EndpointSpec?.Mode).toBe('dnsrr');
      expect(s.Spec?.TaskTemplate?.RestartPolicy).toMatchObject({ Condition: 'any', Delay: 0 });
      expect(s.Spec?.Labels?.[LABEL.posture]).toBe('trusted');
      // Its config reaches it as a Swarm secret at the path it has here, not as a bind mount.
      const spec = s.Spec?.TaskTemplate as {
        ContainerSpec?: { Secrets?: { File?: { Name?: string } }[]; Mounts?: { Source?: string }[] };
      };
      const name = s.Spec?.Labels?.[LABEL.part] as string;
      const config = part(name).configFile;
      expect(spec.ContainerSpec?.Secrets?.map((x) => x.File?.Name)).toContain(config);
      expect(spec.ContainerSpec?.Mounts?.map((m) => m.Source) ?? []).not.toContain(config);
    }
    const secrets = await docker.listSecrets({ filters: { label: [`${LABEL.lab}=${lab.state.labId}`] } });
    expect(secrets.length).toBeGreaterThanOrEqual(20);
    const status = await labStatus(lab.home, runtime);
    const replicas = status.parts.filter((p) => p.kind === 'service').map((p) => p.replicas);
    expect(replicas).toHaveLength(20);
    for (const r of replicas) expect(r).toMatchObject({ running: 1, desired: 1 });
    for (const name of ['security', 'gateway', 'sink']) expect(part(name).containerId).toBeDefined();
    if (before.swarm === 'inactive') expect(lab.state.engine).toEqual({ swarmInitialised: true });
  });

  it('serves a call through the gateway and refuses a database outside the role', async () => {
    const alice = await lab.login('alice');
    const ok = await callService(alice, {
      gatewayUrl: lab.state.gatewayUrl,
      service: 'orders',
      path: '/db/orders/records/ord-1',
    });
    expect(ok.status).toBe(200);
    const bob = await lab.login('bob');
    const refused = await callService(bob, {
      gatewayUrl: lab.state.gatewayUrl,
      service: 'customers',
      path: '/db/customers/records',
    });
    expect(refused.status).toBe(403);
    expect((refused.body as Body).code).toBe('ACCESS_DENIED');
  });

  it("catches code changed inside a task's container: untrusted, 503 SERVICE_UNTRUSTED, trusted again once restored", async () => {
    const catalog = part('catalog');
    const [task] = await taskContainers(docker, catalog);
    expect(task).toBeDefined();
    const container = docker.getContainer(task?.Id as string);
    const original = await readFile(join(catalog.appDir as string, 'service.mjs'));
    const alice = await lab.login('alice');
    const call = () =>
      callService(alice, {
        gatewayUrl: lab.state.gatewayUrl,
        service: 'catalog',
        path: '/db/catalog/records',
      });
    expect((await call()).status).toBe(200);
    try {
      await container.putArchive(
        oneFileTar('service.mjs', Buffer.concat([original, Buffer.from('\n// tampered\n')])),
        { path: '/srv' },
      );
      const { services } = await verifyServices(lab.home, ['catalog']);
      expect(services[0]).toMatchObject({ name: 'catalog', state: 'untrusted' });
      const r = await call();
      expect(r.status).toBe(503);
      expect((r.body as Body).code).toBe('SERVICE_UNTRUSTED');
    } finally {
      await container.putArchive(oneFileTar('service.mjs', original), { path: '/srv' });
    }
    const { services } = await verifyServices(lab.home, ['catalog']);
    expect(services[0]?.state).toBe('trusted');
    expect((await call()).status).toBe(200);
  });

  it('blocks a tampered service, a stolen ticket and a login flood, each reverted', async () => {
    const report = await runAttacks({ scenarios: pick(BOTH_WAYS), postures: ['trusted'], home: lab.home });
    const why = report.results
      .filter((r) => !r.passed)
      .map((r) => `${r.id}: ${r.outcome} ${r.error?.message ?? ''}`)
      .join('\n');
    expect(Object.fromEntries(report.results.map((r) => [r.id, r.outcome])), why).toEqual(
      Object.fromEntries(BOTH_WAYS.map((id) => [id, 'blocked'])),
    );
    for (const r of report.results) expect(r.reverted, r.id).toBe(true);
    const tampered = report.results.find((r) => r.id === 'malicious-service.tampered-code');
    expect(tampered?.evidence.attempts.some((a) => a.code === 'SERVICE_UNTRUSTED')).toBe(true);
  }, 300_000);

  it('lets the same three through in the none posture (a swarm lab the runner brings up itself)', async () => {
    const report = await runAttacks({
      scenarios: pick(BOTH_WAYS),
      postures: ['none'],
      services: 4,
      runtime: 'swarm',
    });
    if (report.postures[0]?.labId) ours.push(report.postures[0].labId);
    expect(report.postures[0]?.error).toBeUndefined();
    expect(Object.fromEntries(report.results.map((r) => [r.id, r.outcome]))).toEqual(
      Object.fromEntries(BOTH_WAYS.map((id) => [id, 'succeeded'])),
    );
    for (const r of report.results) expect(r.reverted, r.id).toBe(true);
  }, 300_000);

  it('is taken down to the engine it found: services, secrets, networks, containers, volumes, swarm', async () => {
    const t0 = Date.now();
    const result = await labDown(lab.home, runtime);
    console.log(
      `swarm e2e: lab down in ${((Date.now() - t0) / 1000).toFixed(1)} s (up took ${(upMs / 1000).toFixed(1)} s)`,
    );
    expect(result.labId).toBe(lab.state.labId);
    expect(await engineSnapshot(docker)).toEqual(before);
    expect((await labDown(lab.home, runtime)).stopped).toEqual([]);
  }, 120_000);
});

describe.runIf(engine)('a Swarm service of 2 replicas under load, one task killed', () => {
  const docker = engine as Dockerode;
  let lab: RunningLab;
  let before: Awaited<ReturnType<typeof engineSnapshot>>;

  beforeAll(async () => {
    before = await engineSnapshot(docker);
    lab = await startLab('trusted', 3, new SwarmRuntime(docker, { replicas: 2 }));
    ours.push(lab.state.labId);
  }, 300_000);
  afterAll(async () => {
    await lab?.[Symbol.asyncDispose]();
  }, 120_000);

  it('the engine starts another task at once; the load goes on, its errors counted', async () => {
    const catalog = lab.state.parts.find((p) => p.name === 'catalog') as PartState;
    const tasks = await waitFor(
      () => taskContainers(docker, catalog),
      (t) => t.length === 2,
    );
    expect(tasks).toHaveLength(2);
    const victim = tasks[0]?.Id as string;
    const load = labLoad({ home: lab.home, clients: 10, durationMs: 8000 });
    await new Promise((r) => setTimeout(r, 3000));
    const killedAt = Date.now();
    await docker.getContainer(victim).kill();
    const back = await waitFor(
      () => taskContainers(docker, catalog),
      (t) => t.length === 2 && !t.some((c) => c.Id === victim),
      30_000,
    );
    const replacedMs = Date.now() - killedAt;
    const result = await load;
    console.log(
      `swarm e2e: a catalog task killed under load; 2 running again after ${replacedMs} ms; load ${result.ok}/${result.requests} ok, errors ${JSON.stringify(result.errors)}`,
    );
    expect(back.map((c) => c.Id)).not.toContain(victim);
    expect(back).toHaveLength(2);
    expect(replacedMs).toBeLessThan(30_000);
    const status = await labStatus(lab.home);
    const replicas = status.parts.find((p) => p.name === 'catalog')?.replicas;
    expect(replicas).toMatchObject({ running: 2, desired: 2 });
    expect(replicas?.restarted).toBeGreaterThanOrEqual(1);
    // The load went on: most requests were answered while one task of one service was replaced.
    expect(result.ok).toBeGreaterThan(result.requests * 0.5);
    // The replacement runs the same image: measured trusted.
    const { services } = await verifyServices(lab.home, ['catalog']);
    expect(services[0]?.state).toBe('trusted');
  }, 120_000);

  it('is taken down to the engine it found', async () => {
    await labDown(lab.home);
    expect(await engineSnapshot(docker)).toEqual(before);
  }, 120_000);
});
