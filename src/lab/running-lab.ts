import type { Defences } from '../defences/presets.js';
import type { LabState } from '../kernel/lab-state.js';
import { type LabDownResult, labDown } from './down.js';
import type { Runtime } from './runtimes/runtime.js';
import { type LabUpOptions, type LabUpResult, labUp } from './up.js';

/**
 * A lab that is up, as an object: its state, parts and defences, and `down()`. A started thing is a
 * different type from a stopped one (testcontainers' pattern), and it is AsyncDisposable, so
 * `await using lab = await startLab(...)` takes it down whatever happens in between.
 */
export interface RunningLab extends AsyncDisposable {
  readonly home: string;
  readonly state: LabState;
  readonly defences: Defences;
  readonly runtime: Runtime | undefined;
  readonly up: LabUpResult;
  /** Stops every part; a second call is harmless. */
  down(): Promise<LabDownResult>;
}

export async function startLab(opts: LabUpOptions): Promise<RunningLab> {
  const up = await labUp(opts);
  let stopped: Promise<LabDownResult> | undefined;
  const down = () => {
    stopped ??= labDown(opts.home, opts.runtime);
    return stopped;
  };
  return {
    home: opts.home,
    state: up.state,
    defences: up.state.defences,
    runtime: opts.runtime,
    up,
    down,
    async [Symbol.asyncDispose]() {
      await down();
    },
  };
}
