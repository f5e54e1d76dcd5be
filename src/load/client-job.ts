import type { Posture } from '../defences/posture.js';
import type { Defences } from '../defences/presets.js';
import type { ServiceDefinition } from '../kernel/topology.js';
import type { Role } from '../policy/types.js';
import type { Mix } from './mix.js';
import type { LoginFigures, RequestFigures } from './run.js';

/** What one client container of `lab load --client-containers` gets: its 0600 input file. */
export interface ClientJob {
  /** the gateway's address on the lab's edge network */
  origin: string;
  /**
   * edge:tls: the lab CA's certificate (public), which the gateway's must chain to, and name the
   * gateway (`origin` is an address no certificate names)
   */
  edgeCaPem?: string;
  labId: string;
  posture: Posture;
  defences: Defences;
  /** its own user, made for the run (the private key is in this file only) */
  user: { index: number; name: string; role: string; password: string; privateKeyPem: string };
  roles: Record<string, Role>;
  services: ServiceDefinition[];
  mix: Mix;
  durationMs: number;
  /** this client's share of the total rate (constant rate); closed loop when absent */
  rate?: number;
  timeoutMs?: number;
  /** how long it waits for the host's go once logged in, then gives up without sending */
  goWithinMs: number;
  /** how long it keeps retrying a login refused as RATE_LIMITED or timed out */
  loginRetryMs: number;
}

/** What a client container reports, one JSON line each. Histograms: HDR, compressed base64. */
export type ClientMessage =
  | { event: 'ready'; loggedIn: boolean }
  /** about once a second while it sends: its requests so far */
  | { event: 'progress'; done: number; errors: number }
  | {
      event: 'result';
      figures: Omit<RequestFigures, 'histogram' | 'serviceHistograms'>;
      logins: LoginFigures;
      histogram: string;
      loginHistogram: string;
      serviceHistograms: Record<string, string>;
    }
  | { event: 'failed'; error: string };
