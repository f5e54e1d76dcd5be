import { join } from 'node:path';
import { TrustedMsError } from '../errors.js';
import { labDir, readLabState } from '../kernel/lab-state.js';
import { labDown } from './down.js';
import { processesOfLab } from './runtimes/process.js';
import type { Runtime } from './runtimes/runtime.js';

/**
 * A runtime that starts nothing more once `close()` is called: a `lab up` interrupted by a signal
 * must not go on starting parts while it is being taken down (it runs in the same event loop as
 * the cleanup; without this a part started after the cleanup's last look was left running).
 */
export function closableRuntime(runtime: Runtime): { runtime: Runtime; close(): void } {
  let closed = false;
  const guarded = new Proxy(runtime, {
    get(target, prop, receiver) {
      if (prop === 'start' && closed) {
        return () => Promise.reject(new TrustedMsError('LAB_START_FAILED', 'lab up was interrupted'));
      }
      const value = Reflect.get(target, prop, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return {
    runtime: guarded,
    close: () => {
      closed = true;
    },
  };
}

/** Takes an interrupted `lab up` down, again until nothing of the home runs and no state is left. */
export async function stopInterruptedUp(home: string, runtime: Runtime): Promise<void> {
  const partsDir = join(labDir(home), 'parts');
  for (let i = 0; i < 50; i++) {
    await labDown(home, runtime);
    // A start already in flight when the signal came may still land: look again a moment later.
    await new Promise((resolve) => setTimeout(resolve, 100));
    if ((await processesOfLab(partsDir)).length === 0 && (await readLabState(home)) === undefined) return;
  }
}
