import { join } from 'node:path';
import { labDir, readLabState, removeLabState } from '../kernel/lab-state.js';
import { stopLabStore } from './lab-store.js';
import { codeCopiesDir, releaseCopy } from './runtimes/code-copy.js';
import { processesOfLab } from './runtimes/process.js';
import type { Runtime } from './runtimes/runtime.js';
import { runtimeFor } from './runtimes/select.js';

export interface LabDownResult {
  labId?: string;
  stopped: string[];
  /** what else the runtime removed by label: containers left behind, networks */
  removed: string[];
  /** `--purge`: the lab's PostgreSQL cluster and the home's choice of it */
  purged: string[];
  durationMs: number;
}

export interface LabDownOptions {
  /** Docker: also remove every object of every trusted-ms lab, found by label (after a crash) */
  all?: boolean;
  /** also drop the data of the PostgreSQL server the lab started (`lab down --purge`) */
  purge?: boolean;
}

/**
 * Stops every part the lab started (by PID or container id), the watchman first (so that it brings
 * nothing back) and then the gateway, then removes what else the runtime made for it (Docker: by
 * label), stops the PostgreSQL server the lab started (its data stays unless `purge`) and forgets
 * the lab. Running it twice is harmless.
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
    // The swarm runtime's teardown is the Docker one's plus the labs' services and code images.
    const engine =
      given !== undefined && given.kind !== 'process'
        ? given
        : await runtimeFor('swarm').catch(() => undefined);
    if (engine) removed.push(...(await engine.teardown(undefined)));
  }
  if (!state) {
    // A `lab up` killed before it wrote the state file may have started parts already: they are
    // found by their config path under this home, as below.
    const stopped = await killLeftovers(home);
    const store = await stopLabStore(home, { purge: opts.purge === true });
    stopped.push(...store.stopped);
    return { stopped, removed, purged: store.purged, durationMs: Date.now() - started };
  }
  const runtime = given ?? (await runtimeFor(state.runtime));
  const stopped: string[] = [];
  for (const p of state.parts.filter((p) => p.kind === 'supervisor')) {
    if (await runtime.isAlive(p)) stopped.push(p.name);
    await runtime.stop(p);
  }
  // The watchman may have restarted a part just before it stopped: the state file names it now.
  const current = (await readLabState(home)) ?? state;
  const order = ['gateway', 'service', 'sink', 'security'];
  const parts = current.parts
    .filter((p) => p.kind !== 'supervisor')
    .sort((a, b) => order.indexOf(a.kind) - order.indexOf(b.kind));
  for (const kind of order) {
    const batch = parts.filter((p) => p.kind === kind);
    await Promise.all(
      batch.map(async (p) => {
        if (await runtime.isAlive(p)) stopped.push(p.name);
        await runtime.stop(p);
      }),
    );
  }
  stopped.push(...(await killLeftovers(home)));
  // After the security service, its only client while the lab ran.
  const store = await stopLabStore(home, { purge: opts.purge === true });
  stopped.push(...store.stopped);
  removed.push(...(await runtime.teardown(state.labId)));
  // The services' code copies (process runtime) are only of use while they run; read-only folders
  // would otherwise stop anyone but root from removing the lab's home.
  await releaseCopy(codeCopiesDir(labDir(home)));
  await removeLabState(home);
  return { labId: state.labId, stopped, removed, purged: store.purged, durationMs: Date.now() - started };
}

/**
 * Any process of this home's lab still running that no state names (started as the watchman was
 * stopped, or by a `lab up` killed half-way): found by its config path, never by name.
 */
async function killLeftovers(home: string): Promise<string[]> {
  const stopped: string[] = [];
  for (const pid of await processesOfLab(join(labDir(home), 'parts'))) {
    try {
      process.kill(pid, 'SIGKILL');
      stopped.push(`pid ${pid}`);
    } catch {
      // gone meanwhile
    }
  }
  return stopped;
}
