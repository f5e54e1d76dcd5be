import type { PartKind, PartState } from '../state.js';

/** What a runtime needs to start one part of the lab. */
export interface PartLaunch {
  name: string;
  kind: PartKind;
  /** the program: a JavaScript file run by Node */
  entry: string;
  configFile: string;
  logFile: string;
  port: number;
  url: string;
  appDir?: string;
}

/**
 * How the lab's parts run: as local processes or as containers. The rest of the lab never knows
 * which one it has.
 */
export interface Runtime {
  readonly kind: 'process' | 'docker';
  start(launch: PartLaunch): Promise<PartState>;
  /** Stops a part; stopping one that is already gone is not an error. */
  stop(part: PartState): Promise<void>;
  isAlive(part: PartState): Promise<boolean>;
  /** Measures a service's code tree from outside the service (attestation). */
  measure(part: Pick<PartState, 'name' | 'appDir' | 'containerId'>): Promise<string>;
  /** The last lines of a part's log. */
  logTail(part: PartState, lines: number): Promise<string>;
}
