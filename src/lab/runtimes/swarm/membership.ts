import type Dockerode from 'dockerode';
import { TrustedMsError } from '../../../errors.js';
import { engineMessage, engineStatus } from '../docker/engine.js';

/** The bridge the engine creates when it joins a swarm (containers' way out from overlays). */
export const GWBRIDGE = 'docker_gwbridge';

/** What joining the swarm changed in the engine: undone by `leaveIfMade` and only then. */
export interface SwarmJoin {
  /** the engine was in no swarm: the lab initialised one */
  initialised: boolean;
  /** docker_gwbridge did not exist before the swarm was initialised */
  gwbridgeMade: boolean;
}

/** The engine's swarm state as `docker info` reports it: `active`, `inactive`, `pending`, `error`, `locked`. */
export async function swarmState(docker: Dockerode): Promise<{ state: string; manager: boolean }> {
  const info = (await docker.info()) as { Swarm?: { LocalNodeState?: string; ControlAvailable?: boolean } };
  return { state: info.Swarm?.LocalNodeState ?? 'inactive', manager: info.Swarm?.ControlAvailable === true };
}

/**
 * A single-node swarm on this engine, initialised when the engine is in none. Its listener and
 * advertised address are loopback: this lab's swarm takes no other node and is not reached from
 * the network. An engine that is a swarm worker (not a manager) cannot run services: refused.
 */
export async function ensureSwarm(docker: Dockerode): Promise<SwarmJoin> {
  const { state, manager } = await swarmState(docker);
  if (state === 'active') {
    if (!manager)
      throw new TrustedMsError(
        'LAB_START_FAILED',
        'this Docker engine is a swarm worker: services need a manager',
        {
          actions: ['run the lab on a manager node, or use --runtime docker'],
        },
      );
    return { initialised: false, gwbridgeMade: false };
  }
  if (state !== 'inactive')
    throw new TrustedMsError('LAB_START_FAILED', `this Docker engine's swarm is ${state}`, {
      actions: ['see docker info; or use --runtime docker'],
    });
  const gwbridgeBefore = await networkExists(docker, GWBRIDGE);
  try {
    await docker.swarmInit({ ListenAddr: '127.0.0.1:2377', AdvertiseAddr: '127.0.0.1' });
  } catch (err) {
    throw new TrustedMsError('LAB_START_FAILED', `could not initialise a swarm: ${engineMessage(err)}`, {
      cause: err,
      actions: ['see docker info; or use --runtime docker'],
    });
  }
  return { initialised: true, gwbridgeMade: !gwbridgeBefore };
}

/**
 * Leaves the swarm the lab initialised, once nothing else runs in it (another lab's services, or
 * the user's own since): then the engine is as the lab found it, docker_gwbridge included.
 * Returns what it removed.
 */
export async function leaveIfMade(docker: Dockerode, join: SwarmJoin): Promise<string[]> {
  if (!join.initialised) return [];
  const { state } = await swarmState(docker);
  if (state !== 'active') return [];
  const others = await docker.listServices();
  if (others.length > 0) return [];
  await docker.swarmLeave({ force: true });
  const removed = ['swarm'];
  if (join.gwbridgeMade) {
    // Its endpoints go with the swarm's last containers: tried a few times.
    for (let i = 0; i < 20; i++) {
      try {
        await docker.getNetwork(GWBRIDGE).remove();
        removed.push(GWBRIDGE);
        break;
      } catch (err) {
        if (engineStatus(err) === 404) break;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }
  return removed;
}

async function networkExists(docker: Dockerode, name: string): Promise<boolean> {
  const found = await docker.listNetworks({ filters: { name: [name] } });
  return found.some((n) => n.Name === name);
}
