import type { Posture } from '../../defences/posture.js';
import type { LabEngineState, PartKind, PartState, RuntimeKind } from '../../kernel/lab-state.js';
import type { EdgeNetwork } from './edge.js';

/** What a runtime measures of a service: its code and, on the process runtime, how it was started. */
export type MeasuredPart = Pick<
  PartState,
  'name' | 'appDir' | 'containerId' | 'swarmServiceId' | 'codeCopy' | 'env' | 'manifest' | 'pid'
> & { configFile?: string };

/** A part run as several tasks by the engine (swarm): how many run, are wanted, ended. */
export interface ReplicaCount {
  running: number;
  desired: number;
  /** tasks that ended while the service was wanted running: each one a restart by the engine */
  restarted: number;
}

/** What a runtime needs to start one part of the lab. */
export interface PartLaunch {
  name: string;
  kind: PartKind;
  /** the program: a JavaScript file run by Node (a path on this host; a container maps it) */
  entry: string;
  configFile: string;
  logFile: string;
  port: number;
  url: string;
  /** the code folder on this host: what a service runs and what attestation measures */
  appDir?: string;
  /**
   * Host files and folders the part reads (its config, secrets, identity). A container gets each
   * mounted at the same path, read-only unless `writable`; a local process already sees them.
   */
  mounts?: { path: string; writable?: boolean }[];
  /** the operator's pass-through (`lab up --part-env`), on top of the part's own environment */
  env?: Record<string, string>;
  /**
   * The lab's stand-in for a running service taken over through a bug (`entry` is an implant):
   * such a compromise changes nothing of how the process was launched, so its launch manifest is
   * recorded as the service's own launch would be. Only the attack scenarios set it.
   */
  simulatesCompromise?: boolean;
}

export interface StartHooks {
  beforeRun?: (part: PartState) => Promise<void>;
  /**
   * Sees the part once its process runs (with its pid): where a start is measured again as it runs,
   * read back from the kernel (process runtime). Docker does not call it.
   */
  afterRun?: (part: PartState) => Promise<void>;
}

/** Where one part is reached, chosen by the runtime before any part starts. */
export interface PartPlacement {
  /** the address the part listens on, inside its process or container */
  listenHost: string;
  port: number;
  /** how the other parts reach it: `scheme://host:port` */
  url: string;
  /** how the CLI on this host reaches it; absent when only the lab's own network can */
  hostUrl?: string;
  /** a service's code folder as the part itself sees it */
  appDir?: string;
  /** the security service's control-plane listener (links:mtls), when the plan asked for one */
  control?: { port: number; url: string; hostUrl?: string };
}

export interface PartPlan {
  name: string;
  kind: PartKind;
  scheme: 'http' | 'https';
  /** the service's code folder on this host */
  appDir?: string;
  /** a second, mTLS-only listener for the other parts (the security service with links:mtls) */
  controlPlane?: boolean;
}

/** The lab a runtime is about to start parts for. */
export interface LabContext {
  labId: string;
  posture: Posture;
  onProgress?: (step: string) => void;
}

/**
 * How the lab's parts run: as local processes or as containers. The rest of the lab never knows
 * which one it has.
 */
export interface Runtime {
  readonly kind: RuntimeKind;
  /** Programs of the lab's own at addresses of their own (edge.ts); absent when the runtime has none. */
  readonly edge?: EdgeNetwork;
  /** What prepare() changed in the engine for the lab (a swarm it initialised), for the lab's state. */
  engineState?(): LabEngineState | undefined;
  /** Once per `lab up`, before any part starts: what the runtime needs (images, networks). */
  prepare(lab: LabContext): Promise<void>;
  /** Addresses for every part of the lab, chosen before any starts. */
  place(parts: PartPlan[]): Promise<Map<string, PartPlacement>>;
  /**
   * Starts a part. `beforeRun` sees the part once its code is in place and before its program
   * runs (a container created but not started): where a restart measures the code it will run.
   */
  start(launch: PartLaunch, hooks?: StartHooks): Promise<PartState>;
  /** Stops a part; stopping one that is already gone is not an error. */
  stop(part: PartState): Promise<void>;
  isAlive(part: PartState): Promise<boolean>;
  /** Replicas of a part the engine runs as a service (swarm); undefined for a single process or container. */
  replicaCount?(part: PartState): Promise<ReplicaCount | undefined>;
  /** Measures a service's code tree from outside the service (attestation). */
  measure(part: MeasuredPart): Promise<string>;
  /**
   * Which parts of what a service runs differ from what was registered (`expectedHash`), for a
   * service found untrusted: `code`, `interpreter`, `argv`, `env.<NAME>`, `config.<key>`,
   * `readback.exe`, `readback.cmdline`, `readback.environ.<NAME>`. A runtime without it is taken to
   * measure the code alone (`code`).
   */
  explain?(part: MeasuredPart, expectedHash: string | undefined): Promise<string[]>;
  /** The last lines of a part's log. */
  logTail(part: PartState, lines: number): Promise<string>;
  /** The last lines of a part's log, then each new line as it comes, until the signal aborts. */
  followLog(
    part: PartState,
    lines: number,
    write: (chunk: string) => void,
    signal?: AbortSignal,
  ): Promise<void>;
  /**
   * After every part is stopped: removes what else the runtime made for the lab (networks), or for
   * every lab with `labId` undefined. Idempotent.
   */
  teardown(labId: string | undefined): Promise<string[]>;
}
