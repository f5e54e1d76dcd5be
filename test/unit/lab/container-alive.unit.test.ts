import { describe, expect, it } from 'vitest';
import { containerAlive } from '../../../src/lab/runtimes/docker/engine.js';

// The container states the engine reports (Engine API ContainerState), as `docker inspect` shows them.
describe('containerAlive', () => {
  it('counts a running container as alive', () => {
    expect(containerAlive({ Status: 'running', Running: true, Restarting: false })).toBe(true);
  });

  it('does not count a container in a restart loop, or one the policy gave up on, as alive', () => {
    expect(containerAlive({ Status: 'restarting', Running: true, Restarting: true })).toBe(false);
    expect(containerAlive({ Status: 'exited', Running: false, Restarting: false })).toBe(false);
    expect(containerAlive({ Status: 'created', Running: false, Restarting: false })).toBe(false);
    expect(containerAlive({ Status: 'paused', Running: true, Restarting: false })).toBe(false);
    expect(containerAlive({ Status: 'dead', Running: false, Restarting: false })).toBe(false);
  });
});
