import type Dockerode from 'dockerode';
import type { ReplicaCount } from '../runtime.js';

interface Task {
  ID: string;
  CreatedAt?: string;
  DesiredState?: string;
  Status?: { State?: string; ContainerStatus?: { ContainerID?: string } };
}

async function tasksOf(docker: Dockerode, serviceId: string): Promise<Task[]> {
  const tasks = (await docker.listTasks({ filters: { service: [serviceId] } })) as Task[];
  return tasks.sort((a, b) => String(b.CreatedAt).localeCompare(String(a.CreatedAt)));
}

/**
 * The containers of a service's running tasks, newest first; with `anyState`, of every task that
 * has a container (the newest first: the one whose log tells why a start failed).
 */
export async function runningTaskContainers(
  docker: Dockerode,
  serviceId: string,
  opts: { anyState?: boolean } = {},
): Promise<string[]> {
  const tasks = await tasksOf(docker, serviceId);
  return tasks
    .filter((t) => opts.anyState === true || (t.DesiredState === 'running' && t.Status?.State === 'running'))
    .map((t) => t.Status?.ContainerStatus?.ContainerID)
    .filter((id): id is string => typeof id === 'string' && id.length > 0);
}

export async function replicaCounts(docker: Dockerode, serviceId: string): Promise<ReplicaCount> {
  const [tasks, info] = await Promise.all([
    tasksOf(docker, serviceId),
    docker.getService(serviceId).inspect() as Promise<{
      Spec?: { Mode?: { Replicated?: { Replicas?: number } } };
    }>,
  ]);
  return {
    running: tasks.filter((t) => t.DesiredState === 'running' && t.Status?.State === 'running').length,
    desired: info.Spec?.Mode?.Replicated?.Replicas ?? 0,
    restarted: tasks.filter(
      (t) => t.DesiredState === 'shutdown' && ['failed', 'complete'].includes(t.Status?.State ?? ''),
    ).length,
  };
}

/**
 * Until the service has `replicas` running tasks, as the Docker runtime's start returns once its
 * container runs: the health wait that follows then counts from a running program, not from a
 * task the scheduler has yet to place (20 services created at once take it seconds here). A task
 * the engine rejects or that fails is reported with the engine's words; the engine starts another
 * (restart delay 0), so only the deadline ends the wait.
 */
export async function waitForRunningTasks(
  docker: Dockerode,
  serviceId: string,
  replicas: number,
  timeoutMs: number,
): Promise<{ running: number; lastError?: string }> {
  const deadline = Date.now() + timeoutMs;
  let lastError: string | undefined;
  for (;;) {
    const tasks = (await tasksOf(docker, serviceId)) as (Task & { Status?: { Err?: string } })[];
    const running = tasks.filter((t) => t.DesiredState === 'running' && t.Status?.State === 'running').length;
    lastError = tasks.find((t) => t.Status?.Err)?.Status?.Err ?? lastError;
    if (running >= replicas || Date.now() >= deadline)
      return { running, ...(lastError ? { lastError } : {}) };
    await new Promise((r) => setTimeout(r, 150));
  }
}
