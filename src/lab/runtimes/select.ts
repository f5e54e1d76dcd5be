import type { RuntimeKind } from '../../kernel/lab-state.js';
import { ProcessRuntime } from './process.js';
import type { LabContext, Runtime } from './runtime.js';

export const RUNTIME_CHOICES = ['auto', 'docker', 'swarm', 'process'] as const;
export type RuntimeChoice = (typeof RUNTIME_CHOICES)[number];

/**
 * The runtime `lab up` asked for; `auto` picks Docker when an engine answers, else local
 * processes, and says why (never Swarm: joining the engine to a swarm is asked for, not guessed).
 * The container runtimes (and dockerode) are loaded only when needed.
 */
export async function chooseRuntime(
  choice: RuntimeChoice,
  docker: { baseImage?: string; replicas?: number } = {},
): Promise<{ runtime: Runtime; reason: string }> {
  if (choice === 'process') return { runtime: new ProcessRuntime(), reason: 'asked for' };
  const { replicas, ...dockerOpts } = docker;
  if (choice === 'swarm') {
    const { SwarmRuntime } = await import('./swarm/swarm-runtime.js');
    return { runtime: await SwarmRuntime.connect(docker), reason: 'asked for' };
  }
  const { DockerRuntime } = await import('./docker/docker-runtime.js');
  if (choice === 'docker') return { runtime: await DockerRuntime.connect(dockerOpts), reason: 'asked for' };
  const { connectEngine } = await import('./docker/engine.js');
  const engine = await connectEngine();
  if (engine)
    return { runtime: new DockerRuntime(engine, dockerOpts), reason: 'auto: a Docker engine answered' };
  return { runtime: new ProcessRuntime(), reason: 'auto: no Docker engine answered' };
}

/**
 * The runtime a running lab was started with, for the commands that act on it later. Given the
 * lab, the runtime can also start parts in it again (a restarted service, an attacker's program).
 */
export async function runtimeFor(kind: RuntimeKind, lab?: LabContext): Promise<Runtime> {
  if (kind === 'process') return new ProcessRuntime();
  const runtime =
    kind === 'swarm'
      ? await (await import('./swarm/swarm-runtime.js')).SwarmRuntime.connect()
      : await (await import('./docker/docker-runtime.js')).DockerRuntime.connect();
  if (lab) runtime.attach(lab);
  return runtime;
}
