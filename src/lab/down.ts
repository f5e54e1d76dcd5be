import { ProcessRuntime } from './runtimes/process.js';
import type { Runtime } from './runtimes/runtime.js';
import { readLabState, removeLabState } from './state.js';

export interface LabDownResult {
  labId?: string;
  stopped: string[];
  durationMs: number;
}

/** Stops every part the lab started (by PID or container id), gateway first, then forgets the lab. */
export async function labDown(home: string, runtime: Runtime = new ProcessRuntime()): Promise<LabDownResult> {
  const started = Date.now();
  const state = await readLabState(home);
  if (!state) return { stopped: [], durationMs: Date.now() - started };
  const order = ['gateway', 'supervisor', 'service', 'security'];
  const parts = [...state.parts].sort((a, b) => order.indexOf(a.kind) - order.indexOf(b.kind));
  const stopped: string[] = [];
  for (const kind of order) {
    const batch = parts.filter((p) => p.kind === kind);
    await Promise.all(
      batch.map(async (p) => {
        if (await runtime.isAlive(p)) stopped.push(p.name);
        await runtime.stop(p);
      }),
    );
  }
  await removeLabState(home);
  return { labId: state.labId, stopped, durationMs: Date.now() - started };
}
