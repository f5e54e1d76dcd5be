import { relative } from 'node:path';
import type Dockerode from 'dockerode';
import { hashDirectory, hashTarStream } from '../../../attestation/tree-hash.js';
import { TrustedMsError } from '../../../errors.js';
import type { PartState } from '../../../kernel/lab-state.js';
import { packageRoot } from '../../../paths.js';
import { freePorts } from '../../ports.js';
import type { EdgeNetwork } from '../edge.js';
import { ProcessRuntime } from '../process.js';
import type { LabContext, PartLaunch, PartPlacement, PartPlan, Runtime, StartHooks } from '../runtime.js';
import { containerLockPath, lockForMeasure, lockForRemoval } from './container-lock.js';
import { EdgeProgram, edgeUrlOf, removeEdgePrograms } from './edge-program.js';
import {
  containerAlive,
  demuxLog,
  engineMessage,
  engineStatus,
  LABEL,
  removeContainer,
  removeWithRetry,
  requireEngine,
  transientRemovalError,
} from './engine.js';
import { ensureImages, IMAGE_ROOT, type LabImages } from './images.js';
import { packTar, treeEntries } from './tar.js';

/** Every part listens on this port inside its own container. */
export const PART_PORT = 8080;
/** The security service's control-plane listener (links:mtls), on the lab network only. */
export const CONTROL_PORT = 8443;
/** A service's code folder inside its container: what attestation reads through the Engine API. */
export const CONTAINER_APP_DIR = '/srv/app';

/**
 * The lab's parts as containers (dockerode). Services and the security service sit on an
 * `internal` network (no route out); the gateway and the security service also join an edge
 * network, the only one with published ports, bound to 127.0.0.1. The supervisor re-measures
 * containers through the Engine API, so it stays on this host as a process.
 */
export class DockerRuntime implements Runtime {
  readonly kind: 'docker' | 'swarm' = 'docker';
  readonly edge: EdgeNetwork = {
    urlOf: (lab, partName) => edgeUrlOf(this, lab, partName),
    startProgram: (lab, spec) => EdgeProgram.start(this, lab, spec),
    removePrograms: (labId, part) => removeEdgePrograms(this, labId, part),
  };
  protected readonly local = new ProcessRuntime();
  protected lab: LabContext | undefined;
  private images: LabImages | undefined;
  protected readonly published = new Map<string, number>();
  /** the host port of a part's control-plane listener (the security service's, links:mtls) */
  protected readonly publishedControl = new Map<string, number>();
  /** the image services run on in this lab */
  private serviceImage: string | undefined;

  /**
   * `baseImage`: a base image (e.g. `node:24-slim`) to build the lab's images on when it is present
   * locally; without it, or when it is absent (nothing is pulled), the host's Node FROM scratch.
   */
  constructor(
    readonly docker: Dockerode,
    readonly opts: { baseImage?: string } = {},
  ) {}

  /** The images of the last prepare(): which tags, and whether the configured base image was used. */
  get builtImages(): LabImages | undefined {
    return this.images;
  }

  /** The runtime for the local engine, or LAB_START_FAILED when none answers. */
  static async connect(opts: { baseImage?: string } = {}): Promise<DockerRuntime> {
    const docker = await requireEngine();
    return new DockerRuntime(docker, opts);
  }

  names(labId: string) {
    return {
      container: (part: string) => `tms-${labId}-${part}`,
      internal: `tms-${labId}-internal`,
      edge: `tms-${labId}-edge`,
    };
  }

  /**
   * For a lab already up (its networks exist): lets start() add parts to it (a restarted service,
   * an attacker's program). The images are looked up at the first start.
   */
  attach(lab: LabContext): void {
    this.lab = lab;
  }

  async prepare(lab: LabContext): Promise<void> {
    this.lab = lab;
    const progress = lab.onProgress ?? (() => undefined);
    this.images = await ensureImages(this.docker, progress, this.opts);
    this.serviceImage = this.images.node;
    const from =
      this.images.base.used === 'configured'
        ? `base image ${this.images.base.configured}`
        : 'host Node, FROM scratch';
    progress(
      this.images.built.length
        ? `built ${this.images.built.join(', ')} (${from}) in ${(this.images.durationMs / 1000).toFixed(1)} s`
        : `images cached (${from}): ${this.images.node}, ${this.images.lab}`,
    );
    await this.createNetworks(lab);
  }

  /** The lab's two networks: the services' internal one (no route out) and the published edge. */
  protected async createNetworks(lab: LabContext): Promise<void> {
    const n = this.names(lab.labId);
    const labels = { [LABEL.lab]: lab.labId, [LABEL.posture]: lab.posture };
    await this.docker.createNetwork({
      Name: n.internal,
      Driver: 'bridge',
      Internal: true,
      CheckDuplicate: true,
      Labels: { ...labels, [LABEL.part]: 'network-internal' },
    });
    await this.createEdgeNetwork(lab);
  }

  protected async createEdgeNetwork(lab: LabContext): Promise<void> {
    const n = this.names(lab.labId);
    const labels = { [LABEL.lab]: lab.labId, [LABEL.posture]: lab.posture };
    await this.docker.createNetwork({
      Name: n.edge,
      Driver: 'bridge',
      CheckDuplicate: true,
      // Defence in depth: a port published on this network binds loopback unless told otherwise.
      Options: { 'com.docker.network.bridge.host_binding_ipv4': '127.0.0.1' },
      Labels: { ...labels, [LABEL.part]: 'network-edge' },
    });
  }

  async place(parts: PartPlan[]): Promise<Map<string, PartPlacement>> {
    const lab = this.requireLab();
    const n = this.names(lab.labId);
    const reachable = parts.filter((p) => p.kind === 'security' || p.kind === 'gateway' || p.kind === 'sink');
    const controlled = parts.filter((p) => p.controlPlane === true);
    const ports = await freePorts(reachable.length + controlled.length);
    reachable.forEach((p, i) => {
      this.published.set(p.name, ports[i] as number);
    });
    controlled.forEach((p, i) => {
      this.publishedControl.set(p.name, ports[reachable.length + i] as number);
    });
    const placed = new Map<string, PartPlacement>();
    for (const p of parts) {
      if (p.kind === 'supervisor') continue;
      const hostPort = this.published.get(p.name);
      placed.set(p.name, {
        listenHost: '0.0.0.0',
        port: PART_PORT,
        url: `${p.scheme}://${n.container(p.name)}:${PART_PORT}`,
        ...(hostPort === undefined ? {} : { hostUrl: `${p.scheme}://127.0.0.1:${hostPort}` }),
        ...(p.kind === 'service' ? { appDir: CONTAINER_APP_DIR } : {}),
        // The parts reach it on the lab's network; the CLI and the watchman on 127.0.0.1, so that
        // the lab token goes only over mutual TLS to the proven security service
        // (kernel/admin-channel.ts), as on processes, never to whatever holds the plain port.
        ...(p.controlPlane === true
          ? {
              control: {
                port: CONTROL_PORT,
                url: `https://${n.container(p.name)}:${CONTROL_PORT}`,
                hostUrl: `https://127.0.0.1:${this.publishedControl.get(p.name) as number}`,
              },
            }
          : {}),
      });
    }
    return placed;
  }

  async start(launch: PartLaunch, hooks: StartHooks = {}): Promise<PartState> {
    if (launch.kind === 'supervisor') return this.local.start(launch, hooks);
    const lab = this.requireLab();
    const n = this.names(lab.labId);
    const hostPort = this.published.get(launch.name);
    const service = launch.kind === 'service';
    const image = service ? await this.nodeImage(lab.labId) : await this.labImage();
    if (service && !launch.appDir)
      throw new TrustedMsError('LAB_START_FAILED', `${launch.name} has no code folder`);
    const uid = process.getuid?.() ?? 0;
    const gid = process.getgid?.() ?? 0;
    const portKey = `${PART_PORT}/tcp`;
    const controlHostPort = this.publishedControl.get(launch.name);
    const controlKey = `${CONTROL_PORT}/tcp`;
    await this.removeStale(n.container(launch.name), lab.labId);
    const container = await this.docker.createContainer({
      name: n.container(launch.name),
      Image: image,
      Cmd: [this.entryInContainer(launch)],
      Env: [`TMS_PART_CONFIG=${launch.configFile}`, 'NODE_ENV=production'],
      User: `${uid}:${gid}`,
      WorkingDir: '/',
      Labels: { [LABEL.lab]: lab.labId, [LABEL.part]: launch.name, [LABEL.posture]: lab.posture },
      ...(hostPort === undefined
        ? {}
        : {
            ExposedPorts: { [portKey]: {}, ...(controlHostPort === undefined ? {} : { [controlKey]: {} }) },
          }),
      HostConfig: {
        Init: true,
        RestartPolicy: { Name: 'on-failure', MaximumRetryCount: 5 },
        Binds: (launch.mounts ?? []).map((m) => `${m.path}:${m.path}:${m.writable ? 'rw' : 'ro'}`),
        // Published parts are created on the edge network (where publishing works) and then join
        // the internal one; API 1.41 takes a single network at create.
        NetworkMode: hostPort === undefined ? n.internal : n.edge,
        ...(hostPort === undefined
          ? {}
          : {
              PortBindings: {
                [portKey]: [{ HostIp: '127.0.0.1', HostPort: String(hostPort) }],
                ...(controlHostPort === undefined
                  ? {}
                  : { [controlKey]: [{ HostIp: '127.0.0.1', HostPort: String(controlHostPort) }] }),
              },
            }),
      },
    });
    try {
      if (hostPort !== undefined)
        await this.docker.getNetwork(n.internal).connect({ Container: container.id });
      if (service) {
        // The code goes into the container's own filesystem: what attestation measures later
        // is what runs, not a folder on this host.
        const entries = await treeEntries(launch.appDir as string, 'app');
        await container.putArchive(packTar(entries), { path: '/srv' });
      }
      await hooks.beforeRun?.(partOf(launch, container.id, hostPort === undefined));
      await container.start();
    } catch (err) {
      await removeContainer(this.docker, container.id, { name: launch.name }).catch(() => undefined);
      throw err;
    }
    const ip = service
      ? (await container.inspect()).NetworkSettings.Networks[n.internal]?.IPAddress
      : undefined;
    return {
      ...partOf(launch, container.id, hostPort === undefined),
      ...(ip ? { directUrl: `${new URL(launch.url).protocol}//${ip}:${PART_PORT}` } : {}),
    };
  }

  /** Removes the part's container once no measurement of it is under way (container-lock.ts). */
  async stop(part: PartState): Promise<void> {
    if (!part.containerId) return this.local.stop(part);
    const release = await lockForRemoval(containerLockPath(part.configFile, part.containerId)).catch(
      () => undefined,
    );
    try {
      await removeContainer(this.docker, part.containerId, { name: part.name });
    } finally {
      await release?.().catch(() => undefined);
    }
  }

  async isAlive(part: PartState): Promise<boolean> {
    if (!part.containerId) return this.local.isAlive(part);
    try {
      const info = await this.docker.getContainer(part.containerId).inspect();
      return containerAlive(info.State);
    } catch (err) {
      if (engineStatus(err) === 404) return false;
      throw err;
    }
  }

  /**
   * Before the container exists: the folder that will be copied into it. After: the container's
   * own code folder, read through the Engine API (getArchive) and hashed here, outside it.
   */
  async measure(
    part: Pick<PartState, 'name' | 'appDir' | 'containerId'> & { configFile?: string },
  ): Promise<string> {
    if (!part.containerId) {
      if (!part.appDir)
        throw new TrustedMsError('INVALID_INPUT', `${part.name} has no code folder to measure`);
      return (await hashDirectory(part.appDir)).hash;
    }
    const release = part.configFile
      ? await lockForMeasure(containerLockPath(part.configFile, part.containerId), part.name)
      : undefined;
    try {
      return await this.readCodeHash(part.name, part.containerId);
    } finally {
      await release?.().catch(() => undefined);
    }
  }

  /**
   * The code folder read through the engine and hashed here. A container that is gone or that the
   * engine cannot read right now (a removal of it under way) is tried twice more, then reported as
   * not measurable: an engine's hiccup is not a verdict on the service.
   */
  protected async readCodeHash(name: string, containerId: string): Promise<string> {
    let last: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, 300 * attempt));
      try {
        const archive = await this.docker.getContainer(containerId).getArchive({ path: CONTAINER_APP_DIR });
        return (await hashTarStream(archive)).hash;
      } catch (err) {
        last = err;
        if (engineStatus(err) === 404) break;
        if (engineStatus(err) !== undefined && !transientRemovalError(err)) break;
      }
    }
    throw new TrustedMsError(
      'MEASUREMENT_DEFERRED',
      `cannot read ${name}'s code from its container right now (${engineStatus(last) ?? 'engine error'}: ${engineMessage(last).slice(0, 200)})`,
      { actions: ['measure again in a moment: trusted-ms service verify'] },
    );
  }

  async logTail(part: PartState, lines: number): Promise<string> {
    if (!part.containerId) return this.local.logTail(part, lines);
    try {
      const buf = (await this.docker
        .getContainer(part.containerId)
        .logs({ stdout: true, stderr: true, tail: lines, follow: false })) as unknown as Buffer;
      return demuxLog(buf).split('\n').filter(Boolean).slice(-lines).join('\n');
    } catch {
      return '';
    }
  }

  /** Follows a container's log until the signal aborts. */
  async followLog(
    part: PartState,
    lines: number,
    write: (chunk: string) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    if (!part.containerId) throw new TrustedMsError('INVALID_INPUT', `${part.name} is not a container`);
    const stream = (await this.docker
      .getContainer(part.containerId)
      .logs({ stdout: true, stderr: true, tail: lines, follow: true })) as NodeJS.ReadableStream;
    const out = { write: (c: Buffer) => write(c.toString('utf8')) };
    this.docker.modem.demuxStream(stream, out as NodeJS.WritableStream, out as NodeJS.WritableStream);
    await new Promise<void>((resolve) => {
      stream.on('end', resolve);
      signal?.addEventListener('abort', () => {
        (stream as unknown as { destroy(): void }).destroy();
        resolve();
      });
    });
  }

  /** Every container and network with the lab's label (or any lab's), removed; gone already is fine. */
  async teardown(labId: string | undefined): Promise<string[]> {
    const label = labId === undefined ? LABEL.lab : `${LABEL.lab}=${labId}`;
    const filters = { label: [label] };
    const removed: string[] = [];
    const containers = await this.docker.listContainers({ all: true, filters });
    await Promise.all(
      containers.map(async (c) => {
        const name = c.Names[0]?.replace(/^\//, '') ?? c.Id;
        await removeContainer(this.docker, c.Id, { name });
        removed.push(name);
      }),
    );
    const networks = await this.docker.listNetworks({ filters });
    await Promise.all(
      networks.map(async (net) => {
        await removeWithRetry(() => this.docker.getNetwork(net.Id).remove(), `network ${net.Name}`);
        removed.push(net.Name);
      }),
    );
    const volumes = (await this.docker.listVolumes({ filters })).Volumes ?? [];
    await Promise.all(
      volumes.map(async (v) => {
        await removeWithRetry(() => this.docker.getVolume(v.Name).remove(), `volume ${v.Name}`);
        removed.push(v.Name);
      }),
    );
    return removed;
  }

  protected entryInContainer(launch: PartLaunch): string {
    const inside = (dir: string) => !relative(dir, launch.entry).startsWith('..');
    if (launch.appDir && launch.kind === 'service' && inside(launch.appDir)) {
      return `${CONTAINER_APP_DIR}/${relative(launch.appDir, launch.entry)}`;
    }
    // A program from a folder mounted at the same path (a compromised service's implant).
    if ((launch.mounts ?? []).some((m) => inside(m.path))) return launch.entry;
    const rel = relative(packageRoot(), launch.entry);
    if (rel.startsWith('..'))
      throw new TrustedMsError('LAB_START_FAILED', `${launch.entry} is not part of the lab image`);
    return `${IMAGE_ROOT}/${rel}`;
  }

  /**
   * A container of this lab left under the name by a run that ended before removing it (an
   * attacker's program whose scenario was killed): removed, so the name is free again.
   */
  private async removeStale(name: string, labId: string): Promise<void> {
    const [stale] = await this.docker.listContainers({
      all: true,
      filters: { name: [`^/${name}$`], label: [`${LABEL.lab}=${labId}`] },
    });
    if (stale) await removeContainer(this.docker, stale.Id, { name });
  }

  /**
   * The image a service runs on: the one `lab up` chose (prepared), or, attached to a running lab,
   * the one its services already run on (the same base image, whatever this CLI was told).
   */
  async nodeImage(labId: string): Promise<string> {
    if (this.serviceImage) return this.serviceImage;
    const containers = await this.docker.listContainers({
      all: true,
      filters: { label: [`${LABEL.lab}=${labId}`] },
    });
    for (const ref of new Set(containers.map((c) => c.Image))) {
      const info = await this.docker
        .getImage(ref)
        .inspect()
        .catch(() => undefined);
      if (info?.Config.Labels?.[LABEL.image] === 'node') {
        this.serviceImage = ref;
        return ref;
      }
    }
    this.serviceImage = (await this.labImages()).node;
    return this.serviceImage;
  }

  /** The lab's code image of this CLI's build (an attacker's program is part of it). */
  private async labImage(): Promise<string> {
    return (await this.labImages()).lab;
  }

  /** Built when missing, cached by content: a running lab's are found, not rebuilt. */
  private async labImages(): Promise<LabImages> {
    this.images ??= await ensureImages(this.docker, () => undefined, this.opts);
    return this.images;
  }

  protected requireLab(): LabContext {
    if (!this.lab)
      throw new TrustedMsError('LAB_START_FAILED', 'the Docker runtime was not prepared for a lab');
    return this.lab;
  }
}

/** What a started container is, in the lab's state; `internal`: reached on the lab's network only. */
export function partOf(launch: PartLaunch, containerId: string, internal: boolean): PartState {
  return {
    name: launch.name,
    kind: launch.kind,
    port: launch.port,
    url: launch.url,
    containerId,
    // A restart makes a new container, so its id names this start.
    ...(containerId !== '' ? { launch: containerId } : {}),
    configFile: launch.configFile,
    logFile: launch.logFile,
    ...(launch.appDir ? { appDir: launch.appDir } : {}),
    ...(internal ? { internal: true } : {}),
  };
}
