import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type Dockerode from 'dockerode';
import { pack } from 'tar-stream';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SCENARIOS } from '../../src/attacks/registry.js';
import { runAttacks } from '../../src/attacks/runner.js';
import type { Scenario } from '../../src/attacks/types.js';
import { hashDirectory } from '../../src/attestation/tree-hash.js';
import { callService } from '../../src/client/call.js';
import { adminChannel } from '../../src/kernel/admin-channel.js';
import { type LabState, type PartState, readLabState } from '../../src/kernel/lab-state.js';
import { verifyServices } from '../../src/lab/attest.js';
import { labDown } from '../../src/lab/down.js';
import { DockerRuntime } from '../../src/lab/runtimes/docker/docker-runtime.js';
import { connectEngine, idempotent, LABEL } from '../../src/lab/runtimes/docker/engine.js';
import { ensureImages, IMAGE_NODE } from '../../src/lab/runtimes/docker/images.js';
import { labStatus } from '../../src/lab/status.js';
import { type RunningLab, startLab } from '../support/lab.js';

/*
 * The lab on real containers. Without an engine these tests are skipped, loudly; under CI=true a
 * missing engine is a failure, never a skip.
 */
const engine = await connectEngine();
const inCi = process.env.CI === 'true';
if (!engine && !inCi) {
  console.warn(
    '\n!!! SKIPPED: the Docker end-to-end tests (no Docker engine answers at DOCKER_HOST or /var/run/docker.sock).\n' +
      '!!! Start dockerd to run them; CI=true turns this skip into a failure.\n',
  );
}

describe.runIf(!engine && inCi)('the Docker lab in CI', () => {
  it('needs a Docker engine', () => {
    throw new Error('CI=true but no Docker engine answers: the Docker end-to-end tests must not be skipped');
  });
});

type Body = { code?: string; [k: string]: unknown };

/** A tar holding one file, `app/<name>`, for putArchive at /srv. */
function oneFileTar(name: string, content: Buffer): NodeJS.ReadableStream {
  const p = pack();
  p.entry({ name: `app/${name}`, mode: 0o644, mtime: new Date(0) }, content);
  p.finalize();
  return p as unknown as NodeJS.ReadableStream;
}

/** alice (admin) reads the catalog; bob is refused the customers database by his role, with its code. */
async function expectCallAndRoleRefusal(lab: RunningLab): Promise<void> {
  const alice = await lab.login('alice');
  const ok = await callService(alice, {
    gatewayUrl: lab.state.gatewayUrl,
    service: 'catalog',
    path: '/db/catalog/records',
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
}

/** Waits (bounded) until `check` holds; the last value is returned for the assertion that follows. */
async function waitFor<T>(probe: () => Promise<T>, check: (v: T) => boolean, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  let v = await probe();
  while (!check(v) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    v = await probe();
  }
  return v;
}

/** Runs a command in a container and waits for it to end; its exit code. */
async function execIn(container: Dockerode.Container, cmd: string[]): Promise<number | null> {
  const exec = await container.exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({});
  await new Promise((resolve) => {
    stream.on('end', resolve);
    stream.on('close', resolve);
    stream.resume();
  });
  return (await exec.inspect()).ExitCode;
}

describe.runIf(engine)('the Docker lab (trusted posture)', () => {
  const docker = engine as Dockerode;
  const runtime = new DockerRuntime(docker);
  let lab: RunningLab;
  const gw = (): string => lab.state.gatewayUrl;
  const part = (name: string): PartState => lab.state.parts.find((p) => p.name === name) as PartState;
  const byLab = () => ({ label: [`${LABEL.lab}=${lab.state.labId}`] });

  beforeAll(async () => {
    lab = await startLab('trusted', 6, runtime);
  }, 240_000);
  afterAll(async () => {
    await lab?.[Symbol.asyncDispose]();
  }, 60_000);

  it('runs every part but the supervisor as a labelled container', async () => {
    expect(lab.state.runtime).toBe('docker');
    const containers = await docker.listContainers({ filters: byLab() });
    const parts = lab.state.parts.filter((p) => p.kind !== 'supervisor').map((p) => p.name);
    expect(containers.map((c) => c.Labels[LABEL.part]).sort()).toEqual([...parts].sort());
    for (const c of containers) expect(c.Labels[LABEL.posture]).toBe('trusted');
  });

  it('logs a user in with the right key and serves a call through the gateway', async () => {
    const alice = await lab.login('alice');
    const r = await callService(alice, {
      gatewayUrl: gw(),
      service: 'orders',
      path: '/db/orders/records/ord-1',
    });
    expect(r.status).toBe(200);
    expect(JSON.stringify(r.body)).toContain('ord-1');
    await expect(lab.login('alice', { keyOf: 'bob' })).rejects.toMatchObject({ code: 'SIGNATURE_INVALID' });
  });

  it('refuses a database outside the role', async () => {
    const bob = await lab.login('bob');
    const r = await callService(bob, {
      gatewayUrl: gw(),
      service: 'customers',
      path: '/db/customers/records',
    });
    expect(r.status).toBe(403);
    expect((r.body as Body).code).toBe('ACCESS_DENIED');
  });

  it('refuses a stolen ticket without its proof of possession', async () => {
    const alice = await lab.login('alice');
    const res = await request(`${gw()}/svc/orders/db/orders/records/ord-1`, {
      headers: { authorization: `Bearer ${alice.ticket}` },
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    });
    const body = (await res.body.json()) as Body;
    expect(res.statusCode).toBe(401);
    expect(body.code).toBe('PROOF_INVALID');
  });

  it('measures a service inside its container exactly as its folder on disk', async () => {
    const catalog = part('catalog');
    expect(await runtime.measure(catalog)).toBe((await hashDirectory(catalog.appDir as string)).hash);
  });

  it('catches code changed inside a running container (putArchive): untrusted, then 503 SERVICE_UNTRUSTED', async () => {
    const catalog = part('catalog');
    const container = docker.getContainer(catalog.containerId as string);
    const original = await readFile(join(catalog.appDir as string, 'service.mjs'));
    const alice = await lab.login('alice');
    const call = () =>
      callService(alice, { gatewayUrl: gw(), service: 'catalog', path: '/db/catalog/records' });
    expect((await call()).status).toBe(200);
    try {
      await container.putArchive(
        oneFileTar('service.mjs', Buffer.concat([original, Buffer.from('\n// tampered\n')])),
        {
          path: '/srv',
        },
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

  it('brings a crashed service back through the restart policy, and it serves again', async () => {
    const catalog = part('catalog');
    const container = docker.getContainer(catalog.containerId as string);
    const before = await container.inspect();
    const alice = await lab.login('alice');
    const call = () =>
      callService(alice, { gatewayUrl: gw(), service: 'catalog', path: '/db/catalog/records' });
    expect((await call()).status).toBe(200);
    // A crash from inside: every process but the container's init (PID 1) and this one gets SIGKILL.
    const killAll =
      "for (const d of require('fs').readdirSync('/proc')) if (/^\\d+$/.test(d) && +d !== 1 && +d !== process.pid) try { process.kill(+d, 'SIGKILL') } catch {}";
    await execIn(container, [IMAGE_NODE, '-e', killAll]);
    const after = await waitFor(
      () => container.inspect(),
      (i) => i.RestartCount > before.RestartCount && i.State.Status === 'running',
    );
    expect(after.RestartCount).toBeGreaterThan(before.RestartCount);
    expect(after.State.StartedAt).not.toBe(before.State.StartedAt);
    const r = await waitFor(call, (x) => x.status === 200);
    expect(r.status).toBe(200);
    expect(await runtime.isAlive(catalog)).toBe(true);
  });

  it('does not count a service in a crash loop as alive (lab status), and it recovers when fixed', async () => {
    const inventory = part('inventory');
    const container = docker.getContainer(inventory.containerId as string);
    const original = await readFile(join(inventory.appDir as string, 'service.mjs'));
    expect((await labStatus(lab.home, runtime)).parts.find((p) => p.name === 'inventory')?.alive).toBe(true);
    try {
      // Code that dies at start: each restart fails until the policy gives up (exited).
      await container.putArchive(oneFileTar('service.mjs', Buffer.from('process.exit(3);\n')), {
        path: '/srv',
      });
      await execIn(container, [
        IMAGE_NODE,
        '-e',
        "for (const d of require('fs').readdirSync('/proc')) if (/^\\d+$/.test(d) && +d !== 1 && +d !== process.pid) try { process.kill(+d, 'SIGKILL') } catch {}",
      ]);
      // Caught between two tries (the engine's back-off): restarting before and after the check,
      // with no start in between, so the check saw a restarting container.
      let seen: boolean | undefined;
      const deadline = Date.now() + 60_000;
      while (seen === undefined && Date.now() < deadline) {
        const a = (await container.inspect()).State;
        if (a.Status === 'exited') break;
        if (a.Status !== 'restarting') continue;
        const alive = await runtime.isAlive(inventory);
        const b = (await container.inspect()).State;
        if (b.Status === 'restarting' && b.StartedAt === a.StartedAt) seen = alive;
      }
      expect(seen).toBe(false);
      const looped = await waitFor(
        () => container.inspect(),
        (i) => i.State.Status === 'exited' && i.RestartCount > 0,
      );
      expect(looped.State.Status).toBe('exited');
      expect(looped.State.ExitCode).toBe(3);
      const status = await labStatus(lab.home, runtime);
      expect(status.parts.find((p) => p.name === 'inventory')?.alive).toBe(false);
      expect(status.parts.find((p) => p.name === 'catalog')?.alive).toBe(true);
    } finally {
      await container.putArchive(oneFileTar('service.mjs', original), { path: '/srv' });
      await idempotent(() => container.start());
    }
    await waitFor(
      () => runtime.isAlive(inventory),
      (alive) => alive,
    );
    expect(await runtime.isAlive(inventory)).toBe(true);
    const { services } = await verifyServices(lab.home, ['inventory']);
    expect(services[0]?.state).toBe('trusted');
  });

  it('seals the services: internal network, no published port; only gateway and security on 127.0.0.1 (the security service also its control plane, for the CLI)', async () => {
    // Inspected on the engine, never probed by sending traffic out.
    const [internal] = await docker.listNetworks({ filters: { name: [`tms-${lab.state.labId}-internal`] } });
    expect(internal).toBeDefined();
    const net = await docker.getNetwork(internal?.Id as string).inspect();
    expect(net.Internal).toBe(true);
    for (const p of lab.state.parts.filter((x) => x.containerId)) {
      const info = await docker.getContainer(p.containerId as string).inspect();
      const bindings = Object.values(info.HostConfig.PortBindings ?? {}).flat();
      const ports = Object.values(info.NetworkSettings.Ports ?? {})
        .flat()
        .filter(Boolean);
      const networks = Object.keys(info.NetworkSettings.Networks);
      expect(info.HostConfig.Init, p.name).toBe(true);
      if (p.kind === 'service') {
        expect(bindings, p.name).toEqual([]);
        expect(ports, p.name).toEqual([]);
        expect(networks, p.name).toEqual([`tms-${lab.state.labId}-internal`]);
      } else {
        // trusted: the security service's control-plane listener too, the only way the CLI and the
        // watchman send the lab token (kernel/admin-channel.ts)
        expect(bindings.length, p.name).toBe(p.kind === 'security' ? 2 : 1);
        for (const b of [...bindings, ...ports] as { HostIp?: string }[])
          expect(b?.HostIp, p.name).toBe('127.0.0.1');
      }
    }
    // The CLI's admin calls go there, over mutual TLS, not to the plain port (before: a fake on the
    // plain port got the lab token on Docker).
    expect(lab.state.controlPlaneUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const admin = await adminChannel(lab.home, lab.state);
    expect(admin.tls).toBe(true);
    expect(admin.url).toBe(lab.state.controlPlaneUrl);
  });

  it('is taken down completely: no container, network or volume with the lab label', async () => {
    const filters = byLab();
    const result = await labDown(lab.home, runtime);
    expect(result.labId).toBe(lab.state.labId);
    expect(await docker.listContainers({ all: true, filters })).toEqual([]);
    expect(await docker.listNetworks({ filters })).toEqual([]);
    expect((await docker.listVolumes({ filters })).Volumes ?? []).toEqual([]);
    // Idempotent: a second down finds nothing to do and does not fail.
    expect((await labDown(lab.home, runtime)).stopped).toEqual([]);
  });
});

/** A local image made here (no registry): the lab's scratch node image plus a marker file. */
async function makeTestBase(docker: Dockerode, ref: string): Promise<string> {
  const { node } = await ensureImages(docker);
  const p = pack();
  p.entry({ name: 'etc', type: 'directory', mode: 0o755, mtime: new Date(0) });
  p.entry({ name: 'etc/tms-e2e-base', mode: 0o644, mtime: new Date(0) }, `${ref}\n`);
  p.finalize();
  const c = await docker.createContainer({ Image: node, Cmd: ['-e', '0'], Labels: { 'tms-e2e': 'base' } });
  try {
    await c.putArchive(p as unknown as NodeJS.ReadableStream, { path: '/' });
    const [repo, tag] = ref.split(':') as [string, string];
    await c.commit({ repo, tag, changes: ['LABEL tms-e2e=base'] } as object);
  } finally {
    await idempotent(() => c.remove({ force: true }));
  }
  return (await docker.getImage(ref).inspect()).Id;
}

describe.runIf(engine)('the Docker lab (paper posture) on a configured base image present locally', () => {
  const docker = engine as Dockerode;
  const baseRef = `tms-e2e-base:${randomBytes(4).toString('hex')}`;
  const runtime = new DockerRuntime(docker, { baseImage: baseRef });
  let baseId: string;
  let lab: RunningLab;

  beforeAll(async () => {
    baseId = await makeTestBase(docker, baseRef);
    lab = await startLab('paper', 3, runtime);
  }, 240_000);
  afterAll(async () => {
    await lab?.[Symbol.asyncDispose]();
    // Only the images this file made from its own base, newest first.
    const images = runtime.builtImages;
    for (const tag of [images?.lab, images?.node, baseRef])
      if (tag) await idempotent(() => docker.getImage(tag).remove());
  }, 60_000);

  it('built FROM the configured base image: labels, history and its file inside a running service', async () => {
    const images = runtime.builtImages;
    expect(images?.base).toEqual({ configured: baseRef, used: 'configured' });
    const node = await docker.getImage(images?.node as string).inspect();
    expect(node.Config.Labels?.[LABEL.baseImage]).toBe(baseRef);
    expect(node.Config.Labels?.[LABEL.baseImageId]).toBe(baseId);
    const history = (await docker.getImage(images?.lab as string).history()) as { Id: string }[];
    expect(history.map((h) => h.Id)).toContain(baseId);
    const catalog = lab.state.parts.find((p) => p.name === 'catalog') as PartState;
    const info = await docker.getContainer(catalog.containerId as string).inspect();
    expect(info.Config.Image).toBe(images?.node);
    const marker = await docker
      .getContainer(catalog.containerId as string)
      .getArchive({ path: '/etc/tms-e2e-base' });
    marker.resume();
  });

  it("restarts a service for an attack on the lab's own base image, not the one this CLI would pick", async () => {
    const scenario = SCENARIOS.find((s) => s.id === 'malicious-service.lying-attestation');
    const report = await runAttacks({
      scenarios: [scenario as Scenario],
      postures: ['paper'],
      home: lab.home,
    });
    expect(report.results.map((r) => [r.outcome, r.reverted])).toEqual([['succeeded', true]]);
    const state = (await readLabState(lab.home)) as LabState;
    const customers = state.parts.find((p) => p.name === 'customers') as PartState;
    expect(customers.containerId).not.toBe(lab.state.parts.find((p) => p.name === 'customers')?.containerId);
    const info = await docker.getContainer(customers.containerId as string).inspect();
    expect(info.Config.Image).toBe(runtime.builtImages?.node);
  });

  it('logs a user in (the paper scheme) and serves a call; refuses a database outside the role', async () => {
    expect(lab.state.posture).toBe('paper');
    await expectCallAndRoleRefusal(lab);
    await expect(lab.login('alice', { keyOf: 'bob' })).rejects.toMatchObject({ code: 'SIGNATURE_INVALID' });
  });
});

describe.runIf(engine)('the Docker lab (none posture) with a configured base image that is absent', () => {
  const docker = engine as Dockerode;
  const absent = `tms-e2e-absent:${randomBytes(4).toString('hex')}`;
  const runtime = new DockerRuntime(docker, { baseImage: absent });
  let lab: RunningLab;

  beforeAll(async () => {
    lab = await startLab('none', 3, runtime);
  }, 240_000);
  afterAll(async () => {
    await lab?.[Symbol.asyncDispose]();
  }, 60_000);

  it('falls back to the scratch image, and says so', async () => {
    const scratch = await ensureImages(docker);
    expect(runtime.builtImages?.base).toEqual({ configured: absent, used: 'scratch' });
    expect(runtime.builtImages?.node).toBe(scratch.node);
    const said: string[] = [];
    const again = await ensureImages(docker, (s) => said.push(s), { baseImage: absent });
    expect(again.node).toBe(scratch.node);
    expect(said.join('\n')).toContain(`base image ${absent} is not present locally`);
    await expect(docker.getImage(absent).inspect()).rejects.toMatchObject({ statusCode: 404 });
    await expect(ensureImages(docker, undefined, { baseImage: 'node:24 "x"' })).rejects.toMatchObject({
      code: 'INVALID_INPUT',
    });
  });

  it('logs a user in with the password alone and serves a call; refuses a database outside the role', async () => {
    expect(lab.state.posture).toBe('none');
    await expectCallAndRoleRefusal(lab);
    await expect(lab.login('alice', { password: 'wrong' })).rejects.toMatchObject({ code: 'AUTH_FAILED' });
  });
});
