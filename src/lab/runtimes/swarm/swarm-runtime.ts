import type Dockerode from 'dockerode';
import { TrustedMsError } from '../../../errors.js';
import type { LabEngineState, PartState } from '../../../kernel/lab-state.js';
import { freePorts } from '../../ports.js';
import { DockerRuntime, PART_PORT, partOf } from '../docker/docker-runtime.js';
import { engineStatus, LABEL, removeWithRetry, requireEngine } from '../docker/engine.js';
import type {
  LabContext,
  MeasuredPart,
  PartLaunch,
  PartPlacement,
  PartPlan,
  ReplicaCount,
  StartHooks,
} from '../runtime.js';
import { buildCodeImage, removeCodeImages } from './code-image.js';
import { ensureSwarm, leaveIfMade, type SwarmJoin, swarmState } from './membership.js';
import { removeLabSecrets, removeSecrets, taskFiles } from './part-secrets.js';
import { RELAY_PART, relayPortOf, startRelay } from './relay.js';
import { replicaHash } from './replica-hash.js';
import { replicaCounts, runningTaskContainers, waitForRunningTasks } from './tasks.js';

/** Labels on the lab's overlay network: what `lab down` must undo in the engine besides the lab. */
const SWARM_MADE = 'trusted-ms.swarm-initialised';
const GWBRIDGE_MADE = 'trusted-ms.gwbridge-made';
/** and how many tasks each service runs: a service restarted later (attack simulate) keeps it */
const REPLICAS = 'trusted-ms.replicas';
/** A task's stop: SIGTERM through the init, then SIGKILL after this long (ns). */
const STOP_GRACE_NS = 1_000_000_000;
/** How long the scheduler may take to run a new service's first task. */
const TASK_START_MS = 60_000;

/**
 * The lab on Docker Swarm (docs/swarm.md). The sample services are Swarm services (replicated,
 * endpoint mode dnsrr: this kernel has no IPVS for the virtual-IP mode) on an internal, attachable
 * overlay network; the engine restarts their tasks at once (restart delay 0). The parts this host
 * must reach on 127.0.0.1 (the security service, the gateway, the sink) stay plain containers of
 * the Docker runtime on the edge bridge, attached to the overlay: Swarm's published ports (ingress
 * and host mode) do not work on these machines. Images, the archive API, labels and removal are
 * the Docker runtime's.
 */
export class SwarmRuntime extends DockerRuntime {
  override readonly kind = 'swarm' as const;
  private join: SwarmJoin | undefined;
  /** tasks per service (`lab up --replicas`); attached to a running lab, what its network records */
  private replicas: number | undefined;

  constructor(docker: Dockerode, opts: { baseImage?: string; replicas?: number } = {}) {
    super(docker, opts.baseImage === undefined ? {} : { baseImage: opts.baseImage });
    this.replicas = opts.replicas;
  }

  static override async connect(opts: { baseImage?: string; replicas?: number } = {}): Promise<SwarmRuntime> {
    return new SwarmRuntime(await requireEngine(), opts);
  }

  engineState(): LabEngineState | undefined {
    return this.join ? { swarmInitialised: this.join.initialised } : undefined;
  }

  protected override async createNetworks(lab: LabContext): Promise<void> {
    this.join = await ensureSwarm(this.docker);
    if (this.join.initialised)
      lab.onProgress?.('initialised a single-node swarm (advertised on 127.0.0.1); lab down leaves it');
    const n = this.names(lab.labId);
    await this.docker.createNetwork({
      Name: n.internal,
      Driver: 'overlay',
      Internal: true,
      Attachable: true,
      CheckDuplicate: true,
      Labels: {
        [LABEL.lab]: lab.labId,
        [LABEL.posture]: lab.posture,
        [LABEL.part]: 'network-internal',
        [SWARM_MADE]: String(this.join.initialised),
        [GWBRIDGE_MADE]: String(this.join.gwbridgeMade),
        [REPLICAS]: String(this.replicas ?? 1),
      },
    });
    await this.createEdgeNetwork(lab);
  }

  /**
   * As on Docker, plus a relay for the services (relay.ts): this host has no way onto the overlay
   * otherwise.
   */
  override async place(parts: PartPlan[]): Promise<Map<string, PartPlacement>> {
    const placed = await super.place(parts);
    const services = parts.filter((p) => p.kind === 'service');
    if (services.length === 0) return placed;
    const lab = this.requireLab();
    if ((await relayPortOf(this.docker, lab.labId, services[0]?.name as string)) !== undefined) return placed;
    const n = this.names(lab.labId);
    // Found free now but not yet bound, like the parts' own: none of theirs may come back here.
    const taken = new Set([...this.published.values(), ...this.publishedControl.values()]);
    const ports = (await freePorts(services.length + taken.size)).filter((p) => !taken.has(p));
    await startRelay(this.docker, {
      labId: lab.labId,
      posture: lab.posture,
      name: n.container(RELAY_PART),
      image: await this.nodeImage(lab.labId),
      edgeNetwork: n.edge,
      internalNetwork: n.internal,
      targets: new Map(
        services.map((s, i) => [
          s.name,
          { target: `${n.container(s.name)}:${PART_PORT}`, hostPort: ports[i] as number },
        ]),
      ),
    });
    return placed;
  }

  override async start(launch: PartLaunch, hooks: StartHooks = {}): Promise<PartState> {
    if (launch.kind !== 'service') return super.start(launch, hooks);
    const lab = this.requireLab();
    const n = this.names(lab.labId);
    if (!launch.appDir) throw new TrustedMsError('LAB_START_FAILED', `${launch.name} has no code folder`);
    const name = n.container(launch.name);
    await this.removeService(name, lab.labId);
    const image = await buildCodeImage(this.docker, {
      nodeImage: await this.nodeImage(lab.labId),
      labId: lab.labId,
      repo: name,
      appDir: launch.appDir,
      beforeCommit: async (builderId) => {
        await hooks.beforeRun?.(partOf(launch, builderId, true));
      },
    });
    const uid = process.getuid?.() ?? 0;
    const gid = process.getgid?.() ?? 0;
    const labels = { [LABEL.lab]: lab.labId, [LABEL.part]: launch.name, [LABEL.posture]: lab.posture };
    const replicas = await this.replicasOf(lab.labId);
    const files = await taskFiles(this.docker, {
      labId: lab.labId,
      part: launch.name,
      mounts: launch.mounts ?? [],
      uid,
      gid,
    });
    const service = await this.docker.createService({
      Name: name,
      Labels: labels,
      TaskTemplate: {
        ContainerSpec: {
          Image: image,
          Args: [this.entryInContainer(launch)],
          Env: [`TMS_PART_CONFIG=${launch.configFile}`, 'NODE_ENV=production'],
          User: `${uid}:${gid}`,
          Dir: '/',
          Labels: labels,
          // An init as PID 1 passes SIGTERM on (Node as PID 1 ignores it): a stop takes ~0 s, not the grace.
          Init: true,
          StopGracePeriod: STOP_GRACE_NS,
          // The files as Swarm secrets, folders as bind mounts (a single node: they are here).
          Secrets: files.secrets,
          Mounts: files.mounts,
        },
        // The engine, not the watchman, brings a task back (as Docker's restart policy does for a
        // container), at once: a new container from the same image, so the same code.
        RestartPolicy: { Condition: 'any', Delay: 0, MaxAttempts: 0 },
        Networks: [{ Target: n.internal }],
      },
      Mode: { Replicated: { Replicas: replicas } },
      // No IPVS on these kernels: the service name resolves to every task's own address.
      EndpointSpec: { Mode: 'dnsrr' },
    });
    const { running, lastError } = await waitForRunningTasks(
      this.docker,
      service.id,
      replicas,
      TASK_START_MS,
    );
    if (running === 0) {
      await this.stop({ swarmServiceId: service.id } as PartState).catch(() => undefined);
      throw new TrustedMsError(
        'LAB_START_FAILED',
        `${launch.name}: no task of its Swarm service ran within ${TASK_START_MS / 1000} s${lastError ? ` (${lastError})` : ''}`,
        { actions: [`see docker service ps --no-trunc ${name}`] },
      );
    }
    const port = await relayPortOf(this.docker, lab.labId, launch.name);
    const { containerId: _builder, ...part } = partOf(launch, '', true);
    return {
      ...part,
      swarmServiceId: service.id,
      ...(port === undefined ? {} : { directUrl: `${new URL(launch.url).protocol}//127.0.0.1:${port}` }),
    };
  }

  /** Removes the service, waits for its tasks to go, then removes the secrets it was given. */
  override async stop(part: PartState): Promise<void> {
    if (part.swarmServiceId === undefined) return super.stop(part);
    const service = this.docker.getService(part.swarmServiceId);
    let secrets: string[] = [];
    try {
      const info = (await service.inspect()) as {
        Spec?: { TaskTemplate?: { ContainerSpec?: { Secrets?: { SecretID?: string }[] } } };
      };
      secrets = (info.Spec?.TaskTemplate?.ContainerSpec?.Secrets ?? []).flatMap((s) => s.SecretID ?? []);
      await service.remove();
    } catch (err) {
      if (engineStatus(err) !== 404) throw err;
    }
    await this.waitTasksGone(part.swarmServiceId);
    await removeSecrets(this.docker, secrets);
  }

  /** A service lives while it exists: the engine restarts its tasks (RestartPolicy any, delay 0). */
  override async isAlive(part: PartState): Promise<boolean> {
    if (part.swarmServiceId === undefined) return super.isAlive(part);
    try {
      await this.docker.getService(part.swarmServiceId).inspect();
      return true;
    } catch (err) {
      if (engineStatus(err) === 404) return false;
      throw err;
    }
  }

  /** Replicas running and wanted, and how many of its tasks ended (each a restart by the engine). */
  async replicaCount(part: PartState): Promise<ReplicaCount | undefined> {
    if (part.swarmServiceId === undefined) return undefined;
    return replicaCounts(this.docker, part.swarmServiceId);
  }

  /**
   * Each running task's container read through the archive API, as the Docker runtime reads a
   * container; replicas that differ give the odd one's hash (replica-hash.ts).
   */
  override async measure(part: MeasuredPart & { configFile?: string }): Promise<string> {
    if (part.swarmServiceId === undefined) return super.measure(part);
    const containers = await runningTaskContainers(this.docker, part.swarmServiceId);
    if (containers.length === 0)
      throw new TrustedMsError(
        'MEASUREMENT_DEFERRED',
        `${part.name} has no running task to measure right now`,
        {
          actions: ['measure again in a moment: trusted-ms service verify'],
        },
      );
    return replicaHash(await Promise.all(containers.map((id) => this.readCodeHash(part.name, id))));
  }

  override async logTail(part: PartState, lines: number): Promise<string> {
    if (part.swarmServiceId === undefined) return super.logTail(part, lines);
    const [newest] = await runningTaskContainers(this.docker, part.swarmServiceId, { anyState: true });
    if (newest === undefined) return '';
    return super.logTail({ ...part, containerId: newest }, lines);
  }

  override async followLog(
    part: PartState,
    lines: number,
    write: (chunk: string) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    if (part.swarmServiceId === undefined) return super.followLog(part, lines, write, signal);
    const [newest] = await runningTaskContainers(this.docker, part.swarmServiceId, { anyState: true });
    if (newest === undefined) throw new TrustedMsError('INVALID_INPUT', `${part.name} has no task yet`);
    return super.followLog({ ...part, containerId: newest }, lines, write, signal);
  }

  /**
   * The lab's services first (their tasks gone before their network can go), then what the
   * Docker runtime removes by label, the lab's code images, and the swarm if the lab initialised
   * it and nothing else runs in it.
   */
  override async teardown(labId: string | undefined): Promise<string[]> {
    const label = labId === undefined ? LABEL.lab : `${LABEL.lab}=${labId}`;
    const removed: string[] = [];
    // An engine in no swarm has no services to list (the API answers 503).
    const inSwarm = (await swarmState(this.docker)).state === 'active';
    const services = inSwarm ? await this.docker.listServices({ filters: { label: [label] } }) : [];
    await Promise.all(
      services.map(async (s) => {
        await removeWithRetry(() => this.docker.getService(s.ID).remove(), `service ${s.Spec?.Name ?? s.ID}`);
        await this.waitTasksGone(s.ID);
        removed.push(s.Spec?.Name ?? s.ID);
      }),
    );
    const made = await this.swarmMadeBy(label);
    if (inSwarm) removed.push(...(await removeLabSecrets(this.docker, labId)));
    removed.push(...(await super.teardown(labId)));
    removed.push(...(await removeCodeImages(this.docker, labId)));
    for (const join of made) removed.push(...(await leaveIfMade(this.docker, join)));
    return removed;
  }

  /** Whether the lab's overlay network says the lab initialised the swarm (read before it goes). */
  private async swarmMadeBy(label: string): Promise<SwarmJoin[]> {
    const networks = await this.docker.listNetworks({ filters: { label: [label, `${SWARM_MADE}=true`] } });
    return networks.map((net) => ({
      initialised: true,
      gwbridgeMade: net.Labels?.[GWBRIDGE_MADE] === 'true',
    }));
  }

  /** A removed service's task containers go after it, asynchronously: until none is left (~15 s at most). */
  private async waitTasksGone(serviceId: string): Promise<void> {
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      const left = await this.docker.listContainers({
        all: true,
        filters: { label: [`com.docker.swarm.service.id=${serviceId}`] },
      });
      if (left.length === 0) return;
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  private async replicasOf(labId: string): Promise<number> {
    if (this.replicas === undefined) {
      const [net] = await this.docker.listNetworks({
        filters: { label: [`${LABEL.lab}=${labId}`, `${LABEL.part}=network-internal`] },
      });
      this.replicas = Number(net?.Labels?.[REPLICAS] ?? 1) || 1;
    }
    return this.replicas;
  }

  /** A service of this lab left under the name (a start cut short): removed, so the name is free. */
  private async removeService(name: string, labId: string): Promise<void> {
    const found = await this.docker.listServices({
      filters: { name: [name], label: [`${LABEL.lab}=${labId}`] },
    });
    for (const s of found.filter((s) => s.Spec?.Name === name)) {
      await this.stop({ swarmServiceId: s.ID } as PartState);
    }
  }
}
