import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { LaunchManifest } from '../attestation/launch-manifest.js';
import type { Posture } from '../defences/posture.js';
import { type Ablation, type Defences, defencesFor } from '../defences/presets.js';
import { fileError } from '../disk-errors.js';
import { errnoCode, TrustedMsError } from '../errors.js';
import { makeDir, writeFileDurably } from '../fs-sync.js';

/** `attacker`: a program `attack simulate` runs beside the lab for a while (never in the state file) */
export type PartKind = 'security' | 'gateway' | 'service' | 'supervisor' | 'sink' | 'attacker';

/**
 * How the lab's parts run: local processes, containers on one Docker engine, or services of a
 * Docker Swarm (the services; the parts published on 127.0.0.1 stay containers, docs/swarm.md).
 */
export type RuntimeKind = 'process' | 'docker' | 'swarm';

/** Whether the lab's parts are containers on a network of the lab's own (Docker, Swarm). */
export function inContainers(kind: RuntimeKind): boolean {
  return kind !== 'process';
}

export interface PartState {
  name: string;
  kind: PartKind;
  port: number;
  /** where the part answers (https for services in the trusted posture) */
  url: string;
  pid?: number;
  containerId?: string;
  /**
   * This start of the part (a new one at every start: the container's id on Docker). A measurement
   * names the start it measured, so that one of an earlier start delivered late (a watchman round
   * that read the old process just before a restart replaced it) is not taken for this one.
   */
  launch?: string;
  /**
   * A service run as a Swarm service (swarm runtime): its id. The engine restarts its tasks, each a
   * new container, so the container measured and logged is looked up from it each time.
   */
  swarmServiceId?: string;
  /**
   * Nothing is published for it (a service container): the CLI does not get a port of its own to
   * call, so health is read from its log. The host still sits on the lab's bridge: see directUrl.
   */
  internal?: boolean;
  /**
   * A service container's own address on the lab's internal network (`scheme://ip:port`). The host
   * sits on that bridge, so this is how the attack scenarios reach a service past the gateway, as an
   * attacker inside the network would; nothing is published for it.
   */
  directUrl?: string;
  /**
   * How the lab's own parts reach it when that is not `url` (a published container: `url` is its
   * 127.0.0.1 port on this host, which a container cannot reach).
   */
  networkUrl?: string;
  configFile: string;
  logFile: string;
  appDir?: string;
  /** the program it runs (process runtime): what the watchman starts again when it dies */
  entry?: string;
  /**
   * A service on the process runtime: the read-only, content-addressed copy of its code folder it
   * was started from (`<lab>/run/<tree hash>`). `entry` stays the folder's path: a restart copies
   * the folder anew.
   */
  codeCopy?: string;
  /**
   * Variables the operator passed to every part on purpose (`lab up --part-env NAME`), with their
   * values: a restart by the watchman passes them again. Nothing else reaches a part (part-env.ts).
   */
  env?: Record<string, string>;
  /**
   * A service on the process runtime, `attestation:measured`: how its process was started
   * (interpreter, argv, environment, config), recorded by the runtime as it started it. Re-measures
   * hash this with the code, not a manifest rebuilt from files that may have changed since.
   */
  manifest?: LaunchManifest;
}

/** One security service replica as the host reaches it. */
export interface SecurityReplicaState {
  part: string;
  url: string;
  controlPlaneUrl?: string;
}

/** The lab's store, as `lab status` names it (the URL without its password). */
export type LabStoreState =
  | { kind: 'lowdb' }
  | {
      kind: 'postgres';
      where: string;
      /** the server the lab started itself (`lab up --store postgres` without --store-url) */
      server?: { pid: number; clusterDir: string };
    };

/** What the runtime changed in the engine for the lab, beyond the lab's own objects. */
export interface LabEngineState {
  /** swarm: the engine was in no swarm and the lab initialised one (`lab down` leaves it) */
  swarmInitialised: boolean;
}

/** What `lab up` leaves behind so that any shell can run `lab status`, `logs`, `down`. */
export interface LabState {
  version: 1;
  labId: string;
  runtime: RuntimeKind;
  /** what the runtime changed in the engine (swarm) */
  engine?: LabEngineState;
  /** the preset the lab was started from */
  posture: Posture;
  /** what `--without` removed from the preset */
  without?: Ablation[];
  /** the defences in force: the preset less `without` */
  defences: Defences;
  startedAt: string;
  /** https with edge:tls: then check it with `caFile` */
  gatewayUrl: string;
  /**
   * The lab CA's certificate (links:mtls or edge:tls): what a client of the gateway's HTTPS trusts
   * (`curl --cacert`), the only CA it trusts for the lab
   */
  caFile?: string;
  securityUrl: string;
  /**
   * links:mtls, when the host can reach it (the process runtime): the security service's
   * control-plane listener, where the CLI and the watchman call its admin API (admin-channel.ts)
   */
  controlPlaneUrl?: string;
  /**
   * `lab up --security-replicas` above 1 (issue 17): every replica as the host reaches it, the
   * first being `securityUrl` / `controlPlaneUrl`; the admin channel fails over among them.
   */
  securityReplicas?: SecurityReplicaState[];
  /** links:mtls: how long every part's identity lasts before its renewal (`lab up --identity-ttl`) */
  identityTtlSeconds?: number;
  /** `lab up --feed-max-age`: the feeds' maximum staleness (enforced with feeds:signed) */
  feedMaxAgeSeconds?: number;
  /** absent in a lab started before the store could be chosen: the files of the home */
  store?: LabStoreState;
  parts: PartState[];
}

export function labDir(home: string): string {
  return join(home, 'lab');
}

export function stateFile(home: string): string {
  return join(labDir(home), 'state.json');
}

export async function readLabState(home: string): Promise<LabState | undefined> {
  let text: string;
  try {
    text = await readFile(stateFile(home), 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw new TrustedMsError('STORE_IO', `cannot read ${stateFile(home)} (${errnoCode(err) ?? 'error'})`);
  }
  try {
    const state = JSON.parse(text) as LabState;
    if (state.version !== 1 || !Array.isArray(state.parts)) throw new Error('shape');
    // A lab started before defences were recorded runs its preset.
    return state.defences ? state : { ...state, defences: defencesFor(state.posture, state.without) };
  } catch {
    throw new TrustedMsError('STORE_CORRUPT', `${stateFile(home)} is not a lab state file`, {
      actions: ['stop leftover parts with `trusted-ms lab down --force`'],
    });
  }
}

export async function writeLabState(home: string, state: LabState): Promise<void> {
  try {
    await makeDir(labDir(home));
    await writeFileDurably(stateFile(home), `${JSON.stringify(state, null, 2)}\n`, 0o600);
  } catch (err) {
    throw fileError(stateFile(home), 'write', err);
  }
}

export async function removeLabState(home: string): Promise<void> {
  await rm(stateFile(home), { force: true });
}

/** The running lab, or LAB_NOT_RUNNING with what to do. */
export async function requireLabState(home: string): Promise<LabState> {
  const state = await readLabState(home);
  if (!state) {
    throw new TrustedMsError('LAB_NOT_RUNNING', `no lab is running in ${home}`, {
      actions: ['start one with `trusted-ms lab up`'],
    });
  }
  return state;
}
