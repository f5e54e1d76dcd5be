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
