import { randomBytes } from 'node:crypto';
import { TrustedMsError } from '../errors.js';
import { withLabTime } from '../kernel/edge-client.js';
import { inContainers, type LabState, readLabState } from '../kernel/lab-state.js';
import { labTopology, type ServiceDefinition } from '../kernel/topology.js';
import type { Role } from '../policy/types.js';
import { openLabStore } from '../store/open.js';
import { openUserAdmin, type UserAdmin } from '../users/admin.js';
import type { ClientContainerFigures } from './client-containers.js';
import { LoadRunJournal, recoverLoadRuns } from './journal.js';
import { defaultMix, type Mix, readMixFile } from './mix.js';
import { type LoadProgress, type LoadRunResult, runLoad } from './run.js';
import { createVirtualUsers, loadKeyType, removeVirtualUsers } from './users.js';

export interface LabLoadOptions {
  home: string;
  clients: number;
  durationMs: number;
  rate?: number;
  mixFile?: string;
  /** run each client in a container of its own on a Docker lab's edge network (one user each) */
  clientContainers?: boolean;
  onStep?: (line: string) => void;
  onProgress?: (p: LoadProgress) => void;
  signal?: AbortSignal;
}

export interface LabLoadResult extends LoadRunResult {
  labId: string;
  mix: Mix;
  users: { created: number; removed: number };
  /** with client containers: how many, how long they took to start, memory each used */
  clientContainers?: ClientContainerFigures;
}

export const MAX_CLIENTS = 2000;
/** Client containers: 150 is the paper's figure; ~ this many fit in a 24 GiB, 2-core machine's run. */
export const MAX_CLIENT_CONTAINERS = 300;
export const MAX_DURATION_MS = 10 * 60_000;

/** The services running in the lab, with their definitions from the topology. */
function labServices(serviceNames: readonly string[]): ServiceDefinition[] {
  const names = new Set(serviceNames);
  return labTopology().services.filter((s) => names.has(s.name));
}

/**
 * `lab load`: checks the lab runs, builds the mix (default or from a file) against the lab's own
 * services and roles, creates one user with its own key pair per client through the security
 * service's admin API, runs the load, and removes the users again, whatever happened.
 */
export async function labLoad(opts: LabLoadOptions): Promise<LabLoadResult> {
  if (!Number.isInteger(opts.clients) || opts.clients < 1 || opts.clients > MAX_CLIENTS) {
    throw new TrustedMsError('INVALID_INPUT', `clients must be a whole number from 1 to ${MAX_CLIENTS}`);
  }
  if (!(opts.durationMs >= 100 && opts.durationMs <= MAX_DURATION_MS)) {
    throw new TrustedMsError('INVALID_INPUT', 'the duration must be from 0.1 s to 10 min');
  }
  if (opts.rate !== undefined && !(opts.rate > 0 && opts.rate <= 1_000_000)) {
    throw new TrustedMsError('INVALID_INPUT', 'the rate must be above 0 and at most 1,000,000 requests/s');
  }
  if (opts.clientContainers && opts.clients > MAX_CLIENT_CONTAINERS) {
    throw new TrustedMsError(
      'INVALID_INPUT',
      `client containers must be a whole number from 1 to ${MAX_CLIENT_CONTAINERS}`,
    );
  }
  const step = opts.onStep ?? (() => undefined);
  const state = await readLabState(opts.home);
  const admin = state === undefined ? undefined : await openUserAdmin(opts.home);
  if (state === undefined || admin?.via !== 'security-service') {
    throw new TrustedMsError('LAB_NOT_RUNNING', `no lab is running in ${opts.home}`, {
      actions: ['start one: trusted-ms lab up'],
    });
  }
  if (new URL(state.gatewayUrl).hostname !== '127.0.0.1') {
    // Load goes only to the lab's own gateway on this machine.
    throw new TrustedMsError('INVALID_INPUT', `the gateway ${state.gatewayUrl} is not on 127.0.0.1`);
  }
  if (opts.clientContainers && !inContainers(state.runtime)) {
    throw new TrustedMsError(
      'RUNTIME_UNSUPPORTED',
      `client containers need a Docker lab; lab ${state.labId} runs as ${state.runtime}es`,
      {
        actions: [
          'bring a Docker lab up: trusted-ms lab down && trusted-ms lab up --runtime docker',
          'or load this lab from this host: trusted-ms lab load --clients N',
        ],
      },
    );
  }
  const services = labServices(state.parts.filter((p) => p.kind === 'service').map((p) => p.name));
  const roles = (await openLabStore(opts.home).data()).roles;
  const mix =
    opts.mixFile === undefined
      ? defaultMix(services, roles)
      : await readMixFile(opts.mixFile, services, roles);
  if (mix.roles.length === 0 || mix.requests.length === 0) {
    throw new TrustedMsError('INVALID_INPUT', 'the lab has no role that may do anything: nothing to send');
  }

  // Recorded before anything is made, so a kill leaves nothing the next `lab load` or `lab down` cannot find.
  const runId = randomBytes(4).toString('hex');
  const journal = await LoadRunJournal.begin(
    opts.home,
    { labId: state.labId, runId, clientContainers: opts.clientContainers === true },
    step,
  );
  try {
    return await loadWithUsers(opts, state, admin, { services, roles, mix, runId }, step);
  } finally {
    // Whatever the run itself could not remove; the record stays for the next command if this fails.
    await recoverLoadRuns(opts.home, { runId: journal.record.runId }).catch(() => undefined);
  }
}

async function loadWithUsers(
  opts: LabLoadOptions,
  state: LabState,
  admin: UserAdmin,
  plan: { services: ServiceDefinition[]; roles: Record<string, Role>; mix: Mix; runId: string },
  step: (line: string) => void,
): Promise<LabLoadResult> {
  const { services, roles, mix, runId } = plan;
  step(
    `creating ${opts.clients} users (roles ${mix.roles.join(', ')}), each with its own ${loadKeyType(state.defences.login) === 'rsa' ? 'RSA-2048' : 'Ed25519'} key pair`,
  );
  let lastShown = 0;
  const users = await createVirtualUsers(admin, {
    runId,
    count: opts.clients,
    roles: mix.roles,
    login: state.defences.login,
    onCreated: (n) => {
      if (n === opts.clients || Date.now() - lastShown > 1000) {
        lastShown = Date.now();
        step(`  ${n}/${opts.clients} users`);
      }
    },
  });
  let removed = 0;
  try {
    step(
      `${opts.clients} clients log in, then ${opts.rate === undefined ? 'closed loop' : `${opts.rate} req/s`} for ${(opts.durationMs / 1000).toFixed(1)} s over ${services.length} services`,
    );
    const run = {
      lab: withLabTime(state, opts.home),
      users,
      roles,
      services,
      mix,
      durationMs: opts.durationMs,
      ...(opts.rate === undefined ? {} : { rate: opts.rate }),
      ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
    };
    let containers: ClientContainerFigures | undefined;
    let result: LoadRunResult;
    if (opts.clientContainers) {
      // Loaded on demand: it brings dockerode, which a process lab's load never needs.
      const { runInClientContainers } = await import('./client-containers.js');
      ({ result, containers } = await runInClientContainers({ ...run, onStep: step }));
      step(
        `client containers: ${containers.count} started in ${(containers.startMs / 1000).toFixed(1)} s, memory each mid-run: mean ${containers.memoryMiB.mean} MiB, max ${containers.memoryMiB.max} MiB (limit ${containers.memoryMiB.limit} MiB)`,
      );
    } else result = await runLoad(run);
    step(`removing the ${users.length} load users`);
    removed = await removeVirtualUsers(
      admin,
      users.map((u) => u.name),
    );
    return {
      ...result,
      labId: state.labId,
      mix,
      users: { created: users.length, removed },
      ...(containers ? { clientContainers: containers } : {}),
    };
  } finally {
    if (removed === 0)
      await removeVirtualUsers(
        admin,
        users.map((u) => u.name),
      ).catch(() => 0);
  }
}
