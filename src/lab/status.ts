import { readFile } from 'node:fs/promises';
import { type Ablation, defenceList } from '../defences/presets.js';
import { adminChannel } from '../kernel/admin-channel.js';
import { type LabState, type LabStoreState, labDir, readLabState } from '../kernel/lab-state.js';
import { type DiskCondition, diskCondition } from './disk.js';
import { feedStatusFileOf } from './plan.js';
import type { ReplicaCount, Runtime } from './runtimes/runtime.js';
import { runtimeFor } from './runtimes/select.js';
import { readRestarts } from './supervisor/restarts.js';

export interface PartStatus {
  name: string;
  kind: string;
  url: string;
  pid?: number;
  alive: boolean;
  attestation?: string;
  /** how often the lab's watchman (process runtime) brought it back after it died */
  restarts: number;
  lastRestartAt?: string;
  /** the watchman stopped bringing it back (too many deaths in a row) */
  gaveUp?: boolean;
  /** a Swarm service: its tasks running and wanted, and how many ended (restarted by the engine) */
  replicas?: ReplicaCount;
  /** the watchman found something else listening on its address while it was dead */
  foreignListener?: { port: number; seenAt: string };
  /**
   * feeds:signed (process runtime): the part's feeds as it last said (at each change): `stale`
   * when it refuses the requests that depend on them (CONTROL_PLANE_STALE)
   */
  feeds?: { stale: boolean; since: string };
}

export interface LabStatus {
  running: boolean;
  labId?: string;
  posture?: string;
  /** the defences removed from the posture (`lab up --without`) */
  without?: Ablation[];
  /** the defences in force, one `name:choice` each */
  defences?: string[];
  runtime?: string;
  gatewayUrl?: string;
  /** the lab CA (edge:tls: what a client of the gateway's HTTPS checks it with) */
  caFile?: string;
  startedAt?: string;
  /** links:mtls: how long each part's identity lasts (renewed at half-life by the watchman) */
  identityTtlSeconds?: number;
  /** the feeds' maximum staleness (`lab up --feed-max-age`; enforced with feeds:signed) */
  feedMaxAgeSeconds?: number;
  /** where users, keys and the audit log are kept (a URL without its password) */
  store?: LabStoreState;
  parts: PartStatus[];
  /** the disk under the lab home: a full or read-only one refuses logins and admin writes */
  disk?: DiskCondition;
}

/**
 * The lab as it is now: each part alive or not, how often the watchman restarted it, and each
 * service's attestation state.
 */
export async function labStatus(home: string, given?: Runtime): Promise<LabStatus> {
  const state = await readLabState(home);
  if (!state) return { running: false, parts: [] };
  const runtime = given ?? (await runtimeFor(state.runtime));
  const [attestation, restarts, disk] = await Promise.all([
    serviceStates(home, state),
    readRestarts(home),
    diskCondition(home).catch(() => undefined),
  ]);
  const parts = await Promise.all(
    state.parts.map(async (p) => {
      const replicas = await runtime.replicaCount?.(p).catch(() => undefined);
      const feeds = await feedStateOf(home, p.name);
      return {
        name: p.name,
        kind: p.kind,
        url: p.url,
        ...(p.pid === undefined ? {} : { pid: p.pid }),
        alive: await runtime.isAlive(p),
        ...(p.kind === 'service' ? { attestation: attestation.get(p.name) ?? 'unknown' } : {}),
        restarts: restarts[p.name]?.restarts ?? 0,
        ...(restarts[p.name]?.lastRestartAt ? { lastRestartAt: restarts[p.name]?.lastRestartAt } : {}),
        ...(restarts[p.name]?.gaveUp ? { gaveUp: true } : {}),
        ...(restarts[p.name]?.foreignListener ? { foreignListener: restarts[p.name]?.foreignListener } : {}),
        ...(replicas === undefined ? {} : { replicas }),
        ...(feeds === undefined ? {} : { feeds }),
      };
    }),
  );
  return {
    running: parts.some((p) => p.alive),
    labId: state.labId,
    posture: state.posture,
    ...(state.without?.length ? { without: state.without } : {}),
    defences: defenceList(state.defences),
    runtime: state.runtime,
    gatewayUrl: state.gatewayUrl,
    ...(state.caFile ? { caFile: state.caFile } : {}),
    startedAt: state.startedAt,
    ...(state.identityTtlSeconds === undefined ? {} : { identityTtlSeconds: state.identityTtlSeconds }),
    ...(state.feedMaxAgeSeconds === undefined ? {} : { feedMaxAgeSeconds: state.feedMaxAgeSeconds }),
    store: state.store ?? { kind: 'lowdb' },
    parts,
    ...(disk ? { disk } : {}),
  };
}

async function serviceStates(home: string, state: LabState): Promise<Map<string, string>> {
  try {
    const body = await (await adminChannel(home, state)).read<{
      services: { name: string; state: string }[];
    }>('/v1/services', { timeoutMs: 2000 });
    return new Map(body.services.map((s) => [s.name, s.state]));
  } catch {
    return new Map();
  }
}

/** What a part last wrote about its feeds (feeds:signed, process runtime), if it wrote anything. */
async function feedStateOf(home: string, part: string): Promise<PartStatus['feeds']> {
  try {
    const x = JSON.parse(await readFile(feedStatusFileOf(labDir(home), part), 'utf8')) as {
      stale?: unknown;
      at?: unknown;
    };
    if (typeof x.stale !== 'boolean' || typeof x.at !== 'string') return undefined;
    return { stale: x.stale, since: x.at };
  } catch {
    return undefined;
  }
}
