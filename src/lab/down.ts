import type { Runtime } from './runtimes/runtime.js';
import { runtimeFor } from './runtimes/select.js';
import { readLabState, removeLabState } from './state.js';

export interface LabDownResult {
  labId?: string;
  stopped: string[];
  /** what else the runtime removed by label: containers left behind, networks */
  removed: string[];
  durationMs: number;
}

export interface LabDownOptions {
  /** Docker: also remove every object of every trusted-ms lab, found by label (after a crash) */
  all?: boolean;
}

/**
 * Stops every part the lab started (by PID or container id), gateway first, then removes what else
 * the runtime made for it (Docker: by label) and forgets the lab. Running it twice is harmless.
 */
export async function labDown(
  home: string,
  given?: Runtime,
  opts: LabDownOptions = {},
): Promise<LabDownResult> {
  const started = Date.now();
  const state = await readLabState(home);
  const removed: string[] = [];
  if (opts.all) {
    const docker = given?.kind === 'docker' ? given : await runtimeFor('docker').catch(() => undefined);
    if (docker) removed.push(...(await docker.teardown(undefined)));
  }
  if (!state) return { stopped: [], removed, durationMs: Date.now() - started };
  const runtime = given ?? (await runtimeFor(state.runtime));
  const order = ['gateway', 'supervisor', 'service', 'sink', 'security'];
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
  removed.push(...(await runtime.teardown(state.labId)));
  await removeLabState(home);
  return { labId: state.labId, stopped, removed, durationMs: Date.now() - started };
}
