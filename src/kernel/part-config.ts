import { readFileSync } from 'node:fs';
import type { GatewayLimitConfig } from '../defences/limits.js';
import type { Posture } from '../defences/posture.js';
import type { Defences } from '../defences/presets.js';
import { TrustedMsError } from '../errors.js';
import type { FeedTrust } from '../protocol/signed-feed.js';

/**
 * What a part of the lab is told when it starts: one JSON file whose path is in `TMS_PART_CONFIG`.
 * Secrets are not in it, only the paths of 0600 files holding them, so the config can be shown.
 */
interface CommonPartConfig {
  labId: string;
  /** the preset, for the part's own log and /healthz; its behaviour follows `defences` */
  posture: Posture;
  defences: Defences;
  part: string;
  host: string;
  port: number;
  securityUrl: string;
  /**
   * With security service replicas (issue 17): every replica's address as this part reaches it
   * (their control planes with links:mtls), the first being `controlPlaneUrl ?? securityUrl`.
   * Absent: the one security service. Read through `securityUrlsOf`.
   */
  securityReplicaUrls?: string[];
  /** the lab's token, the CLI's admin credential: held by the parts that need it only */
  labTokenFile: string;
  /** the lab's maximum staleness of a feed (`lab up --feed-max-age`), in ms */
  feedMaxAgeMs?: number;
}

/**
 * feeds:signed, for a part that follows the feeds: the public feed keys it verifies them with and
 * the maximum staleness (public: no secret in it), and where it says whether it went stale.
 */
interface FeedFollower {
  feedTrust?: FeedTrust;
  /** process runtime: the file `lab status` reads this part's feed state from */
  feedStatusFile?: string;
}

/** What a part holds to prove to the security service who it is (src/defences/part-credentials.ts). */
interface OwnCredential {
  /** credentials:secret: this part's own credential (0600), never the lab token */
  partCredentialFile?: string;
  /**
   * credentials:certificate (links:mtls): the security service's control-plane listener, reached
   * over mutual TLS with this part's identity; `securityUrl` then serves logins and the CLI only.
   */
  controlPlaneUrl?: string;
}

export interface SecurityPartConfig extends CommonPartConfig {
  kind: 'security';
  /** the lab home holding the store; the security service is its only writer while it runs */
  home: string;
  /** this replica's own ticket-signing key */
  ticketKeyFile: string;
  /** feeds:signed: the lab's feed-signing key (0600; the same for every replica), not a ticket key */
  feedKeyFile?: string;
  /** the other replicas' ticket keys (public halves), published with its own (issue 17) */
  peerTicketKeyFiles?: string[];
  sealKeyFile: string;
  /** links:mtls: the lab CA folder (ca.pem, ca-key.pem) */
  caDir?: string;
  /** links:mtls: how long the identities it issues last (`lab up --identity-ttl`) */
  identityTtlSeconds?: number;
  /** credentials:secret: the digests of every part's own credential, by part name */
  partCredentialIndexFile?: string;
  /** links:mtls: the port of the control-plane listener (TLS 1.3, client certificates required) */
  controlPort?: number;
  /** where to push attestation changes so the gateway need not wait for its next poll */
  gatewayUrl?: string;
  /** edge:tls: the lab CA, which the gateway's HTTPS certificate must chain to */
  gatewayCaFile?: string;
  ticketTtlSeconds: number;
  challengeTtlSeconds: number;
  /**
   * audit:signed: the audit key (0600) and the file of signed checkpoints, both in the user's key
   * folder, out of the lab home (src/store/audit/checkpoint-files.ts)
   */
  auditKeyFile?: string;
  auditCheckpointsFile?: string;
}

/** With certificates (links:mtls) the gateway holds no lab token either. */
export interface GatewayPartConfig
  extends Omit<CommonPartConfig, 'labTokenFile'>,
    OwnCredential,
    FeedFollower {
  labTokenFile?: string;
  kind: 'gateway';
  sealKeyFile: string;
  /** service name → base URL (https in trusted) */
  services: Record<string, string>;
  /** links:mtls: folder with cert.pem, key.pem of the gateway's identity, and the CA file */
  identityDir?: string;
  caFile?: string;
  /**
   * edge:tls: the folder of the identity the gateway serves HTTPS to users with (its identity
   * folder, whose certificate then also names 127.0.0.1 and localhost)
   */
  edgeIdentityDir?: string;
  /** limits:on: the gateway's numbers (chosen and measured in lab/plan.ts, GATEWAY_LIMITS) */
  rateLimit: GatewayLimitConfig;
  /**
   * request:bound: a folder of the gateway's own that outlives it (the proofs it accepted stamped
   * ahead of its clock, src/services/gateway/proofs-ahead.ts)
   */
  stateDir?: string;
}

/**
 * A service holds the lab token only when parts are who they declare (the baseline): with its own
 * credential it has no `labTokenFile` at all.
 */
export interface ServicePartConfig
  extends Omit<CommonPartConfig, 'labTokenFile'>,
    OwnCredential,
    FeedFollower {
  labTokenFile?: string;
  kind: 'service';
  /** the service's code folder: the attested tree (bundle + service.json) */
  appDir: string;
  /** callee name → base URL */
  peers: Record<string, string>;
  identityDir?: string;
  caFile?: string;
}

/** The watchman: restarts dead parts (process runtime) and, in trusted, re-measures every service on an interval. */
export interface SupervisorPartConfig extends CommonPartConfig {
  kind: 'supervisor';
  /**
   * links:mtls: its identity and the CA, and the security service's control-plane listener, where
   * it checks that a part on the security service's port is the security service, by certificate
   */
  identityDir?: string;
  caFile?: string;
  controlPlaneUrl?: string;
  home: string;
  intervalSeconds: number;
}

/** The attacker's sink (`src/services/sink/`): records what reaches it, for the attack scenarios. */
export interface SinkPartConfig extends Omit<CommonPartConfig, 'labTokenFile'> {
  kind: 'sink';
  /** the token that reads and clears its records (lab/secrets.ts, sinkTokenFile); not the lab token */
  readTokenFile: string;
}

export type PartConfig =
  | SecurityPartConfig
  | GatewayPartConfig
  | ServicePartConfig
  | SupervisorPartConfig
  | SinkPartConfig;

/** Reads the config a part was started with; a part without one cannot start. */
export function readPartConfig<K extends PartConfig['kind']>(kind: K): Extract<PartConfig, { kind: K }> {
  const file = process.env.TMS_PART_CONFIG;
  if (!file) throw new TrustedMsError('INVALID_INPUT', 'TMS_PART_CONFIG is not set');
  const config = JSON.parse(readFileSync(file, 'utf8')) as PartConfig;
  if (config.kind !== kind)
    throw new TrustedMsError('INVALID_INPUT', `${file} is a ${config.kind} config, not ${kind}`);
  return config as Extract<PartConfig, { kind: K }>;
}

/** Set by the process runtime for a service it started from a read-only copy of its code folder. */
export const CODE_DIR_ENV = 'TMS_CODE_DIR';

/**
 * Where a service's code is as it runs: the runtime's read-only copy when it made one, otherwise
 * its code folder. Its `service.json` is read from here, so that the definition a service acts on is
 * the one that was measured with its program, not a file swapped into the folder since.
 */
export function codeDirOf(config: ServicePartConfig, env: NodeJS.ProcessEnv = process.env): string {
  const dir = env[CODE_DIR_ENV];
  return dir !== undefined && dir !== '' ? dir : config.appDir;
}

/**
 * Set inside a service's process, by the measured start (src/lab/runtimes/measured-start.ts), to
 * the bytes of the `service.json` that was measured with its program: the definition it acts on is
 * never a file read again after the measurement. Not in the process's environment at exec.
 */
export const DEFINITION_VARIABLE = 'TMS_SERVICE_DEFINITION';

/**
 * Where this part reaches the security service: every replica (issue 17), the first being the one
 * it tried first before replicas existed (its control plane with links:mtls).
 */
export function securityUrlsOf(config: {
  securityUrl: string;
  controlPlaneUrl?: string;
  securityReplicaUrls?: string[];
}): string[] {
  return config.securityReplicaUrls ?? [config.controlPlaneUrl ?? config.securityUrl];
}

/** A secret file's content, without a trailing newline. */
export function readSecret(file: string): string {
  return readFileSync(file, 'utf8').trim();
}
