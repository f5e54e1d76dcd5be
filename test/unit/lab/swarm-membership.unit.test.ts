import type Dockerode from 'dockerode';
import { describe, expect, it } from 'vitest';
import { ensureSwarm, leaveIfMade } from '../../../src/lab/runtimes/swarm/membership.js';

/** An engine that records what is done to it: in a swarm or not, with some services and networks. */
function fakeEngine(opts: { state: string; manager?: boolean; services?: string[]; networks?: string[] }) {
  const calls: string[] = [];
  let state = opts.state;
  const networks = new Set(opts.networks ?? []);
  const docker = {
    info: async () => ({ Swarm: { LocalNodeState: state, ControlAvailable: opts.manager ?? true } }),
    swarmInit: async (o: unknown) => {
      calls.push(`init ${JSON.stringify(o)}`);
      state = 'active';
      networks.add('docker_gwbridge');
    },
    swarmLeave: async () => {
      calls.push('leave');
      state = 'inactive';
    },
    listServices: async () => (opts.services ?? []).map((n) => ({ Spec: { Name: n } })),
    listNetworks: async () => [...networks].map((Name) => ({ Name })),
    getNetwork: (name: string) => ({
      remove: async () => {
        calls.push(`remove network ${name}`);
        networks.delete(name);
      },
    }),
  };
  return { docker: docker as unknown as Dockerode, calls };
}

describe('a swarm of the lab’s own: joined when there is none, left only if the lab made it', () => {
  it('initialises a loopback single-node swarm on an engine in none, and says docker_gwbridge is new', async () => {
    const { docker, calls } = fakeEngine({ state: 'inactive' });
    expect(await ensureSwarm(docker)).toEqual({ initialised: true, gwbridgeMade: true });
    expect(calls).toEqual([
      `init ${JSON.stringify({ ListenAddr: '127.0.0.1:2377', AdvertiseAddr: '127.0.0.1' })}`,
    ]);
  });

  it('uses a swarm the engine is already in (a manager) and changes nothing', async () => {
    const { docker, calls } = fakeEngine({ state: 'active' });
    expect(await ensureSwarm(docker)).toEqual({ initialised: false, gwbridgeMade: false });
    expect(calls).toEqual([]);
  });

  it('refuses a worker node, which cannot run services', async () => {
    const { docker } = fakeEngine({ state: 'active', manager: false });
    await expect(ensureSwarm(docker)).rejects.toMatchObject({ code: 'LAB_START_FAILED' });
  });

  it('leaves a swarm it made, and the docker_gwbridge that came with it', async () => {
    const { docker, calls } = fakeEngine({ state: 'active', networks: ['bridge', 'docker_gwbridge'] });
    expect(await leaveIfMade(docker, { initialised: true, gwbridgeMade: true })).toEqual([
      'swarm',
      'docker_gwbridge',
    ]);
    expect(calls).toEqual(['leave', 'remove network docker_gwbridge']);
  });

  it('keeps a docker_gwbridge that was there before the lab', async () => {
    const { docker, calls } = fakeEngine({ state: 'active' });
    expect(await leaveIfMade(docker, { initialised: true, gwbridgeMade: false })).toEqual(['swarm']);
    expect(calls).toEqual(['leave']);
  });

  it('stays in a swarm it did not make, or one where other services run', async () => {
    const mine = fakeEngine({ state: 'active' });
    expect(await leaveIfMade(mine.docker, { initialised: false, gwbridgeMade: false })).toEqual([]);
    const shared = fakeEngine({ state: 'active', services: ['someone-else'] });
    expect(await leaveIfMade(shared.docker, { initialised: true, gwbridgeMade: true })).toEqual([]);
    expect([...mine.calls, ...shared.calls]).toEqual([]);
  });
});
