import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isTrustedMsError } from '../../../src/errors.js';
import {
  containerLockPath,
  lockForMeasure,
  lockForRemoval,
} from '../../../src/lab/runtimes/docker/container-lock.js';
import {
  type EngineRetry,
  removeContainer,
  removeWithRetry,
  transientRemovalError,
} from '../../../src/lab/runtimes/docker/engine.js';

/**
 * A FAKE engine: it answers a scripted list of errors, then success. The real engine gives these
 * answers only when a removal races another operation on a loaded machine (issue 21), which a test
 * cannot cause on demand; the answers' texts are the engine's own, copied from dockerd's log.
 */
function engineError(statusCode: number, message: string): Error {
  return Object.assign(new Error(`(HTTP code ${statusCode}) server error - ${message}`), {
    statusCode,
    json: { message },
  });
}

const DIR_NOT_EMPTY = engineError(
  500,
  'container 60f1c0ffee: driver "overlay2" failed to remove root filesystem: unlinkat /var/lib/docker/overlay2/abc/merged/tmp/x: directory not empty',
);
const IN_PROGRESS = engineError(409, 'removal of container 60f1c0ffee is already in progress');
const RESTARTING = engineError(
  409,
  'You cannot remove a restarting container 60f1c0ffee. Stop the container before attempting removal or force remove',
);

interface Calls {
  remove: number;
  inspect: number;
  kill: number;
  update: unknown[];
  wait: number;
}

function fakeEngine(
  answers: (Error | 'ok' | 'gone')[],
  state: { Running: boolean; Restarting?: boolean } = { Running: false },
) {
  const calls: Calls = { remove: 0, inspect: 0, kill: 0, update: [], wait: 0 };
  const container = {
    async remove() {
      const next = answers[Math.min(calls.remove, answers.length - 1)];
      calls.remove++;
      if (next === 'ok') return;
      if (next === 'gone' || next === undefined) throw engineError(404, 'No such container');
      throw next;
    },
    async inspect() {
      calls.inspect++;
      return { State: state, HostConfig: { RestartPolicy: { Name: 'on-failure', MaximumRetryCount: 5 } } };
    },
    async kill() {
      calls.kill++;
    },
    async update(opts: unknown) {
      calls.update.push(opts);
    },
    async wait() {
      calls.wait++;
    },
  };
  // biome-ignore lint/suspicious/noExplicitAny: the fake stands in for dockerode's Container
  return { docker: { getContainer: () => container as any }, calls };
}

const slept: number[] = [];
const retry: EngineRetry = {
  attempts: 5,
  firstDelayMs: 100,
  maxDelayMs: 300,
  sleep: async (ms) => {
    slept.push(ms);
  },
};

describe('removeContainer against the engine answers a loaded machine gives', () => {
  afterEach(() => {
    slept.length = 0;
  });

  it('tries again after "directory not empty" and succeeds, backing off', async () => {
    const { docker, calls } = fakeEngine([DIR_NOT_EMPTY, DIR_NOT_EMPTY, 'ok']);
    await removeContainer(docker, '60f1c0ffee', { name: 'accounts', retry });
    expect(calls.remove).toBe(3);
    expect(slept).toEqual([100, 200]);
  });

  it('switches the restart policy off, kills and waits for a running container before the next try', async () => {
    const { docker, calls } = fakeEngine([RESTARTING, 'ok'], { Running: true, Restarting: true });
    await removeContainer(docker, '60f1c0ffee', { name: 'accounts', retry });
    expect(calls.update).toEqual([{ RestartPolicy: { Name: 'no', MaximumRetryCount: 0 } }]);
    expect(calls.kill).toBe(1);
    expect(calls.wait).toBe(1);
    expect(calls.remove).toBe(2);
  });

  it('does not take "removal already in progress" for gone: it returns once the engine says 404', async () => {
    const { docker, calls } = fakeEngine([IN_PROGRESS, IN_PROGRESS, 'gone']);
    await removeContainer(docker, '60f1c0ffee', { retry });
    expect(calls.remove).toBe(3);
  });

  it('fails after the last try with ENGINE_OPERATION_FAILED naming the container and the engine message', async () => {
    const { docker, calls } = fakeEngine([DIR_NOT_EMPTY]);
    const err = await removeContainer(docker, '60f1c0ffee', { name: 'accounts', retry }).catch((e) => e);
    expect(isTrustedMsError(err, 'ENGINE_OPERATION_FAILED')).toBe(true);
    expect(err.message).toMatch(/accounts \(60f1c0ffee\) after 5 tries: .*directory not empty/);
    expect(calls.remove).toBe(5);
  });

  it('does not retry an answer that will not change (a bad request)', async () => {
    const bad = engineError(400, 'invalid parameter');
    const { docker, calls } = fakeEngine([bad, 'ok']);
    await expect(removeContainer(docker, 'x', { retry })).rejects.toBe(bad);
    expect(calls.remove).toBe(1);
  });

  it('retries a network removal while its endpoints are released', async () => {
    let n = 0;
    await removeWithRetry(
      async () => {
        if (n++ < 2)
          throw engineError(
            409,
            'error while removing network: network tms-x-internal id 1 has active endpoints',
          );
      },
      'network tms-x-internal',
      retry,
    );
    expect(n).toBe(3);
  });

  it('tells transient answers from the rest', () => {
    expect(transientRemovalError(DIR_NOT_EMPTY)).toBe(true);
    expect(transientRemovalError(IN_PROGRESS)).toBe(true);
    expect(
      transientRemovalError(engineError(409, 'Conflict. The container name "/x" is already in use')),
    ).toBe(false);
    expect(transientRemovalError(new Error('socket hang up'))).toBe(false);
  });
});

describe('container lock: a measurement and a removal of one container never overlap', () => {
  let dir: string;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('defers a measurement while a removal holds the container, and allows it afterwards', async () => {
    dir = await mkdtemp(join(tmpdir(), 'tms-lock-'));
    const path = containerLockPath(join(dir, 'parts', 'accounts.json'), 'c0ffee');
    const release = await lockForRemoval(path);
    const err = await lockForMeasure(path, 'accounts').catch((e) => e);
    expect(isTrustedMsError(err, 'MEASUREMENT_DEFERRED')).toBe(true);
    expect(err.message).toMatch(/accounts is being removed or replaced/);
    await release();
    const again = await lockForMeasure(path, 'accounts');
    await again();
  });

  it('makes a removal wait for a measurement under way', async () => {
    dir = await mkdtemp(join(tmpdir(), 'tms-lock-'));
    const path = containerLockPath(join(dir, 'parts', 'accounts.json'), 'c0ffee');
    const order: string[] = [];
    const measuring = await lockForMeasure(path, 'accounts');
    const removal = lockForRemoval(path).then(async (release) => {
      order.push('removal');
      await release();
    });
    await new Promise((r) => setTimeout(r, 300));
    order.push('measured');
    await measuring();
    await removal;
    expect(order).toEqual(['measured', 'removal']);
  });
});
