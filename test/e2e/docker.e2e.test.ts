import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type Dockerode from 'dockerode';
import { pack } from 'tar-stream';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashDirectory } from '../../src/attestation/tree-hash.js';
import { callService } from '../../src/client/call.js';
import { verifyServices } from '../../src/lab/attest.js';
import { labDown } from '../../src/lab/down.js';
import { connectEngine, LABEL } from '../../src/lab/runtimes/docker/engine.js';
import { DockerRuntime } from '../../src/lab/runtimes/docker.js';
import type { PartState } from '../../src/lab/state.js';
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

  it('seals the services: internal network, no published port; only gateway and security on 127.0.0.1', async () => {
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
        expect(bindings.length, p.name).toBe(1);
        for (const b of [...bindings, ...ports] as { HostIp?: string }[])
          expect(b?.HostIp, p.name).toBe('127.0.0.1');
      }
    }
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
