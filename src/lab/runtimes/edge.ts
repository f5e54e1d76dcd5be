import { TrustedMsError } from '../../errors.js';
import type { LabState } from '../../kernel/lab-state.js';
import type { Runtime } from './runtime.js';

export interface EdgeProgramSpec {
  /** the part's name: the container is `tms-<lab>-<name>`, labelled `trusted-ms.part=<name>` */
  name: string;
  /** a bundled program on this host (one .mjs file under dist/lab, nothing else to load) */
  program: string;
  /** what the program reads (readProgramInput): a 0600 file in the container, never an argument */
  input: unknown;
  /** the host kills the container after this long, whatever the program does */
  deadlineMs: number;
  /** hard memory limit of the container (default 256 MiB) */
  memoryBytes?: number;
  /** told each JSON line the program writes to stdout (program-io.ts emit) */
  onMessage?: (message: Record<string, unknown>) => void;
  /** keep its stdin open for `send` (a signal to all programs of a run at once, e.g. go) */
  stdin?: boolean;
}

export interface EdgeProgramExit {
  exitCode: number | undefined;
  /** the host's deadline killed it */
  timedOut: boolean;
  /** every JSON line it wrote, in order */
  messages: Record<string, unknown>[];
  /** the end of what it wrote to stderr (or non-JSON to stdout) */
  stderr: string;
}

/** One program running on the lab's edge network, as its caller sees it. */
export interface EdgeProgramHandle extends AsyncDisposable {
  readonly exited: Promise<EdgeProgramExit>;
  /** its own address on the edge network: the one the gateway sees */
  readonly address: string;
  /** Writes one line to its stdin (spec.stdin); false when it has no open stdin. */
  send(line: string): boolean;
  /** Memory it uses now; undefined once it has stopped or when the runtime cannot tell. */
  memoryBytes(): Promise<number | undefined>;
  /** Removes it, running or not. Idempotent. */
  remove(): Promise<void>;
}

/**
 * An optional capability of a runtime: programs of the lab's own (the DoS attacker's flood, `lab
 * load --client-containers`) on a network of the lab's, each at an address of its own, so that the
 * gateway sees them apart from each other and from the user on this host. Local processes all
 * share 127.0.0.1, so the process runtime does not have it.
 */
export interface EdgeNetwork {
  /** The address of a part of the lab as a program on the edge network reaches it. */
  urlOf(lab: LabState, partName: string): Promise<string>;
  /** Starts a program on the edge network, labelled as the lab's (so `lab down` removes it too). */
  startProgram(lab: LabState, spec: EdgeProgramSpec): Promise<EdgeProgramHandle>;
  /** Removes the lab's programs whose part name is `part` (or matches it); how many. */
  removePrograms(labId: string, part: string | RegExp): Promise<number>;
}

/** The runtime's edge network, or a clear error naming what needed it. */
export function edgeNetworkOf(runtime: Runtime, needed: string): EdgeNetwork {
  if (runtime.edge !== undefined) return runtime.edge;
  throw new TrustedMsError(
    'RUNTIME_UNSUPPORTED',
    `${needed} needs a runtime with a network of the lab's own; the ${runtime.kind} runtime has none`,
    { actions: ['start the lab with `lab up --runtime docker`'] },
  );
}
