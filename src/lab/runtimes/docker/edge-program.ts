import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { PassThrough } from 'node:stream';
import type Dockerode from 'dockerode';
import { TrustedMsError } from '../../../errors.js';
import type { LabState } from '../../../kernel/lab-state.js';
import { PROGRAM_INPUT_ENV } from '../../program-io.js';
import type { EdgeProgramExit, EdgeProgramHandle, EdgeProgramSpec } from '../edge.js';
import type { DockerRuntime } from './docker-runtime.js';
import { engineStatus, idempotent, LABEL, removeContainer } from './engine.js';
import { packTar } from './tar.js';

/** Where the program and its input go in the container (a folder every node image has). */
const PROGRAM_FILE = '/srv/program.mjs';
const INPUT_FILE = '/srv/input.json';
/** Output kept for an error message: the last lines of stderr. */
const STDERR_KEPT = 4096;

/**
 * A program of the lab's run to completion in a container of its own on the lab's edge network
 * (the gateway's, not the services' internal one), so that the gateway sees it at an address of its
 * own, unlike every client on this host, which Docker's port relay shows as one. Used by the DoS
 * attacker's flood and by `lab load --client-containers`.
 *
 * It runs on the lab's node image (nothing pulled): a bundled program and its input are put into
 * the container before it starts. It is labelled as the lab's (so `lab down` removes it as well),
 * killed at its deadline, and removed by `remove()` (idempotent), which its users call whatever
 * happened.
 */
export class EdgeProgram implements EdgeProgramHandle {
  readonly exited: Promise<EdgeProgramExit>;

  private constructor(
    private readonly docker: Dockerode,
    readonly containerId: string,
    /** the container's own address on the lab's edge network */
    readonly address: string,
    exited: Promise<EdgeProgramExit>,
    private readonly input: NodeJS.WritableStream | undefined,
  ) {
    this.exited = exited;
  }

  /** Writes one line to its stdin (spec.stdin); false when it has no open stdin. */
  send(line: string): boolean {
    if (this.input === undefined) return false;
    this.input.write(`${line}\n`);
    return true;
  }

  static async start(runtime: DockerRuntime, lab: LabState, spec: EdgeProgramSpec): Promise<EdgeProgram> {
    const docker = runtime.docker;
    const names = runtime.names(lab.labId);
    const containerName = names.container(spec.name);
    await removeByName(docker, lab.labId, containerName);
    const uid = process.getuid?.() ?? 0;
    const gid = process.getgid?.() ?? 0;
    const program = await readFile(spec.program).catch(() => {
      throw new TrustedMsError('LAB_START_FAILED', `the program ${spec.program} is missing`, {
        actions: ['build first: npm run build'],
      });
    });
    const container = await docker.createContainer({
      name: containerName,
      Image: await runtime.nodeImage(lab.labId),
      Cmd: [PROGRAM_FILE],
      Env: [`${PROGRAM_INPUT_ENV}=${INPUT_FILE}`, 'NODE_ENV=production'],
      User: `${uid}:${gid}`,
      WorkingDir: '/',
      Labels: { [LABEL.lab]: lab.labId, [LABEL.part]: spec.name, [LABEL.posture]: lab.posture },
      ...(spec.stdin ? { OpenStdin: true, StdinOnce: false, AttachStdin: true } : {}),
      HostConfig: {
        Init: true,
        NetworkMode: names.edge,
        Memory: spec.memoryBytes ?? 256 * 1024 * 1024,
      },
    });
    const removeIt = () => removeContainer(docker, container.id, { name: spec.name });
    let exited: Promise<EdgeProgramExit>;
    let address: string | undefined;
    let stdin: NodeJS.WritableStream | undefined;
    try {
      await container.putArchive(
        packTar([
          { type: 'data', name: PROGRAM_FILE.slice(1), data: program, mode: 0o644 },
          {
            type: 'data',
            name: INPUT_FILE.slice(1),
            data: Buffer.from(JSON.stringify(spec.input)),
            mode: 0o600,
            uid,
            gid,
          },
        ]),
        { path: '/' },
      );
      // Attached before it starts: nothing it writes is missed.
      const stream = (await container.attach({
        stream: true,
        stdout: true,
        stderr: true,
        ...(spec.stdin ? { stdin: true, hijack: true } : {}),
      })) as NodeJS.ReadWriteStream;
      if (spec.stdin) stdin = stream;
      const out = new PassThrough();
      const err = new PassThrough();
      docker.modem.demuxStream(stream, out, err);
      stream.on('end', () => {
        out.end();
        err.end();
      });
      const messages: Record<string, unknown>[] = [];
      let stderr = '';
      const keep = (text: string) => {
        stderr = (stderr + text).slice(-STDERR_KEPT);
      };
      err.on('data', (c: Buffer) => keep(c.toString('utf8')));
      const lines = createInterface({ input: out });
      lines.on('line', (line) => {
        let m: unknown;
        try {
          m = JSON.parse(line);
        } catch {
          keep(`${line}\n`);
          return;
        }
        if (m === null || typeof m !== 'object') return;
        messages.push(m as Record<string, unknown>);
        spec.onMessage?.(m as Record<string, unknown>);
      });
      const outputDone = new Promise<void>((r) => lines.once('close', r));
      await container.start();
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        void idempotent(() => container.kill());
      }, spec.deadlineMs);
      exited = (async () => {
        let exitCode: number | undefined;
        try {
          exitCode = ((await container.wait()) as { StatusCode?: number }).StatusCode;
        } catch (e) {
          // Removed under it (a scenario's revert, lab down): it is over either way.
          if (engineStatus(e) !== 404) throw e;
        } finally {
          clearTimeout(timer);
        }
        // Its last lines may still be on their way from the engine.
        await Promise.race([outputDone, new Promise((r) => setTimeout(r, 2000))]);
        return { exitCode, timedOut, messages, stderr };
      })();
      exited.catch(() => undefined);
      const info = await container.inspect();
      address = info.NetworkSettings.Networks[names.edge]?.IPAddress || undefined;
      if (address === undefined)
        throw new TrustedMsError('LAB_START_FAILED', `${spec.name} has no edge address`);
    } catch (e) {
      await removeIt();
      throw e;
    }
    return new EdgeProgram(docker, container.id, address, exited, stdin);
  }

  /**
   * Memory the container uses now, as `docker stats` counts it: the cgroup's usage less its
   * inactive file cache. Read from the cgroup's own files when this host can see them (instant;
   * the engine's stats call takes ~1 s each, one at a time), else through the Engine API.
   * Undefined once it has stopped.
   */
  async memoryBytes(): Promise<number | undefined> {
    const fromCgroup = await cgroupMemory(this.containerId);
    if (fromCgroup !== undefined) return fromCgroup;
    try {
      const s = (await this.docker.getContainer(this.containerId).stats({ stream: false })) as unknown as {
        memory_stats?: { usage?: number; stats?: Record<string, number> };
      };
      const usage = s.memory_stats?.usage;
      if (usage === undefined) return undefined;
      const st = s.memory_stats?.stats ?? {};
      return usage - (st.inactive_file ?? st.total_inactive_file ?? 0);
    } catch {
      return undefined;
    }
  }

  /** Removes the container, running or not. Idempotent. */
  async remove(): Promise<void> {
    (this.input as { destroy?: () => void } | undefined)?.destroy?.();
    await removeContainer(this.docker, this.containerId);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.remove();
  }
}

/**
 * Every container of the lab whose part label is `part` (or matches it), an edge program a run
 * left behind when it was cut short, removed. Returns how many.
 */
export async function removeEdgePrograms(
  runtime: DockerRuntime,
  labId: string,
  part: string | RegExp,
): Promise<number> {
  const found = (
    await runtime.docker.listContainers({
      all: true,
      filters: {
        label: [`${LABEL.lab}=${labId}`, ...(typeof part === 'string' ? [`${LABEL.part}=${part}`] : [])],
      },
    })
  ).filter((c) => typeof part === 'string' || part.test(c.Labels[LABEL.part] ?? ''));
  await Promise.all(
    found.map((c) => removeContainer(runtime.docker, c.Id, { name: c.Labels[LABEL.part] ?? c.Id })),
  );
  return found.length;
}

/**
 * The address of a part of the lab on its edge network, as an edge program reaches it (the
 * container's IP there, the port it listens on inside).
 */
export async function edgeUrlOf(runtime: DockerRuntime, lab: LabState, partName: string): Promise<string> {
  const part = lab.parts.find((p) => p.name === partName);
  if (part?.containerId === undefined) {
    throw new TrustedMsError('SERVICE_NOT_FOUND', `lab ${lab.labId} has no ${partName} container`);
  }
  const info = await runtime.docker.getContainer(part.containerId).inspect();
  const ip = info.NetworkSettings.Networks[runtime.names(lab.labId).edge]?.IPAddress;
  if (!ip)
    throw new TrustedMsError('SERVICE_NOT_FOUND', `${partName} is not on lab ${lab.labId}'s edge network`);
  // `port` is where the part listens inside its container (its url is the published one).
  return `${new URL(part.url).protocol}//${ip}:${part.port}`;
}

/** cgroup v1 (cgroupfs driver) or v2 (cgroupfs or systemd driver) memory of a container. */
async function cgroupMemory(id: string): Promise<number | undefined> {
  const tries: [usage: string, stat: string, inactive: string][] = [
    [
      `/sys/fs/cgroup/memory/docker/${id}/memory.usage_in_bytes`,
      `/sys/fs/cgroup/memory/docker/${id}/memory.stat`,
      'total_inactive_file',
    ],
    [
      `/sys/fs/cgroup/system.slice/docker-${id}.scope/memory.current`,
      `/sys/fs/cgroup/system.slice/docker-${id}.scope/memory.stat`,
      'inactive_file',
    ],
    [
      `/sys/fs/cgroup/docker/${id}/memory.current`,
      `/sys/fs/cgroup/docker/${id}/memory.stat`,
      'inactive_file',
    ],
  ];
  for (const [usageFile, statFile, key] of tries) {
    try {
      const usage = Number((await readFile(usageFile, 'utf8')).trim());
      const stat = await readFile(statFile, 'utf8');
      const inactive = Number(new RegExp(`^${key} (\\d+)$`, 'm').exec(stat)?.[1] ?? 0);
      if (Number.isFinite(usage)) return usage - inactive;
    } catch {
      // not this layout
    }
  }
  return undefined;
}

async function removeByName(docker: Dockerode, labId: string, name: string): Promise<void> {
  const [stale] = await docker.listContainers({
    all: true,
    filters: { name: [`^/${name}$`], label: [`${LABEL.lab}=${labId}`] },
  });
  if (stale) await removeContainer(docker, stale.Id, { name });
}
