import { join } from 'node:path';
import { acceptsSelfReport } from '../defences/attestation.js';
import type { GatewayLimitConfig } from '../defences/limits.js';
import { partCredentialStrategy } from '../defences/part-credentials.js';
import { type PeerCallRules, rulesForEdge } from '../defences/peer-calls.js';
import type { Posture } from '../defences/posture.js';
import type { Defences } from '../defences/presets.js';
import type { RuntimeKind, SecurityReplicaState } from '../kernel/lab-state.js';
import type {
  GatewayPartConfig,
  PartConfig,
  SecurityPartConfig,
  ServicePartConfig,
  SinkPartConfig,
  SupervisorPartConfig,
} from '../kernel/part-config.js';
import type { ServiceDefinition } from '../kernel/topology.js';
import { packageRoot } from '../paths.js';
import { DEFAULT_FEED_MAX_AGE_SECONDS, type FeedTrustKey } from '../protocol/signed-feed.js';
import type { AuditKeyFiles } from '../store/audit/checkpoint-files.js';
import { partCredentialFileOf, partCredentialIndexFileOf } from './part-credentials.js';
import type { PartLaunch, PartPlacement, PartPlan } from './runtimes/runtime.js';
import { type LabSecretFiles, replicaTicketKeyFiles } from './secrets.js';
import { securityPartName } from './security-replicas.js';

/**
 * The gateway's limits (limits:on).
 * Per user: about what one of the load test's 150 users gets at saturation (~60/s), far below
 * what one flooding user pushes through (measured 400-4300/s, dos.request-flood); over it a
 * user waits its turn (up to 10 s, ~1,000 requests: more than the flood keeps in flight,
 * since a refused client asks again at once) rather than spinning on 429s.
 * Per client address: high, since the load test's users may share one. Failed logins per
 * address: a few typos' worth, then one a second; and two login steps in flight per address,
 * the rest queued, so one address never holds all the password hashing (dos.login-flood).
 */
export const GATEWAY_LIMITS: GatewayLimitConfig = {
  perUser: 100,
  userBurst: 200,
  userMaxWaitMs: 10_000,
  perClient: 4000,
  burst: 4000,
  loginsPerClient: 50,
  loginFailuresPerClient: 1,
  loginFailureBurst: 10,
  loginsInFlightPerClient: 2,
};

/** One part of the plan: the config it is told and how the runtime launches it. */
export interface PlannedPart<C extends PartConfig = PartConfig> {
  config: C;
  launch: PartLaunch;
}

export interface PlannedService extends PlannedPart<ServicePartConfig> {
  definition: ServiceDefinition;
  /** the service.json written into its code folder (part of the tree attestation measures) */
  serviceJson: string;
  /** links:mtls: where its identity goes once it passes attestation */
  identityDir?: string;
}

/** Every part of a lab, decided before anything starts. */
export interface LabPlan {
  security: PlannedPart<SecurityPartConfig>;
  /** `--security-replicas N`: replicas 2..N (`security-2`...), each a part like the first (issue 17) */
  securityReplicas: PlannedPart<SecurityPartConfig>[];
  sink: PlannedPart<SinkPartConfig>;
  services: PlannedService[];
  gateway: PlannedPart<GatewayPartConfig>;
  /** the watchman: on processes (restarts), with measured attestation (re-measures), with mTLS (renewals) */
  supervisor?: PlannedPart<SupervisorPartConfig>;
  /** how the CLI on this host reaches the security service and the gateway */
  securityUrl: string;
  gatewayUrl: string;
  /** links:mtls, when the host reaches it: the control-plane listener, the admin API's channel */
  controlPlaneUrl?: string;
  /** with replicas: every one as this host reaches it (the admin channel's failover) */
  securityReplicaHosts?: SecurityReplicaState[];
  /** links:mtls: the lab CA folder, its certificate, and the gateway's identity folder */
  caDir: string;
  caFile: string;
  gatewayIdentityDir: string;
  /** links:mtls: the watchman's identity folder (it checks the security service by certificate) */
  supervisorIdentityDir: string;
  /** credentials:secret: the parts that get a credential of their own (`createPartCredentials`) */
  credentialParts: string[];
}

export interface LabPlanInput {
  labId: string;
  home: string;
  /** `<home>/lab`: configs, logs, code folders, identities */
  dir: string;
  posture: Posture;
  defences: Defences;
  services: ServiceDefinition[];
  /** the topology's per-edge peer policy, written into each callee's measured definition */
  peerCalls?: PeerCallRules;
  runtimeKind: RuntimeKind;
  /** from the runtime (`place`), for every part named by `partsToPlace` */
  placements: ReadonlyMap<string, PartPlacement>;
  secrets: LabSecretFiles;
  attestIntervalSeconds?: number;
  /** links:mtls: how long every part's identity lasts (renewed at half-life) */
  identityTtlSeconds?: number;
  /** the operator's pass-through to every part (`lab up --part-env`) */
  partEnv?: Record<string, string>;
  /** `lab up --security-replicas` (default 1) */
  securityReplicas?: number;
  /** `lab up --feed-max-age`, in seconds (DEFAULT_FEED_MAX_AGE_SECONDS) */
  feedMaxAgeSeconds?: number;
  /** feeds:signed: the trust bundle's keys (the feed key's public half), written into the parts' configs */
  feedTrustKeys?: FeedTrustKey[];
  /** audit:signed: the audit key and checkpoints, in the user's key folder (not the lab home) */
  auditKey?: AuditKeyFiles;
}

/** The parts the runtime is asked to place before the plan is made (addresses come first). */
export function partsToPlace(
  dir: string,
  defences: Defences,
  services: ServiceDefinition[],
  securityReplicas = 1,
): PartPlan[] {
  const scheme: PartPlan['scheme'] = defences.links === 'mtls' ? 'https' : 'http';
  return [
    ...Array.from({ length: securityReplicas }, (_, i) => ({
      name: securityPartName(i),
      kind: 'security' as const,
      scheme: 'http' as const,
      ...(partCredentialStrategy(defences) === 'certificate' ? { controlPlane: true } : {}),
    })),
    { name: 'gateway', kind: 'gateway', scheme: defences.edge === 'tls' ? 'https' : 'http' },
    { name: 'sink', kind: 'sink', scheme: 'http' },
    ...services.map((s) => ({
      name: s.name,
      kind: 'service' as const,
      scheme,
      appDir: appDirOf(dir, s.name),
    })),
  ];
}

/** Where a part says whether its feeds went stale (feeds:signed, process runtime): read by `lab status`. */
export function feedStatusFileOf(dir: string, part: string): string {
  return join(dir, 'feeds', `${part}.json`);
}

/** A service's code folder on this host: the tree attestation measures. */
export function appDirOf(dir: string, service: string): string {
  return join(dir, 'services', service, 'app');
}

/**
 * The lab as the defences, the topology and the runtime's placements make it: every part's config
 * and launch. Pure (paths and objects, no I/O), so `lab up` and a service's restart start parts
 * the same way (serviceMounts), and a test can read the plan without starting anything.
 */
export function planLab(input: LabPlanInput): LabPlan {
  const { labId, dir, posture, defences, secrets } = input;
  const mtls = defences.links === 'mtls';
  const edgeTls = defences.edge === 'tls';
  const at = (name: string): PartPlacement => {
    const p = input.placements.get(name);
    if (p === undefined) throw new Error(`no placement for ${name}`);
    return p;
  };
  const securityAt = at('security');
  const gatewayAt = at('gateway');
  const sinkAt = at('sink');
  const caDir = join(dir, 'ca');
  const caFile = join(caDir, 'ca.pem');
  const gatewayIdentityDir = join(dir, 'gateway', 'identity');
  // The parts that follow the feeds prove who they are with their own credential, not the lab token.
  const strategy = partCredentialStrategy(defences);
  const ownCredentials = strategy === 'secret';
  const control = strategy === 'certificate' ? securityAt.control : undefined;
  if (strategy === 'certificate' && control === undefined) throw new Error('no control-plane placement');
  const supervisorIdentityDir = join(dir, 'supervisor', 'identity');
  const credentialOf = (part: string) =>
    ownCredentials
      ? { partCredentialFile: partCredentialFileOf(dir, part) }
      : control
        ? { controlPlaneUrl: control.url }
        : {};
  // Every replica as the parts reach it: its control plane when the parts use one (issue 17).
  const replicaCount = input.securityReplicas ?? 1;
  const replicaAt = Array.from({ length: replicaCount }, (_, i) => at(securityPartName(i)));
  const replicaUrls = replicaAt.map((p) => (control ? (p.control?.url ?? p.url) : p.url));
  const feedMaxAgeMs = (input.feedMaxAgeSeconds ?? DEFAULT_FEED_MAX_AGE_SECONDS) * 1000;
  const common = (p: PartPlacement) => ({
    labId,
    posture,
    defences,
    host: p.listenHost,
    securityUrl: securityAt.url,
    ...(replicaCount > 1 ? { securityReplicaUrls: replicaUrls } : {}),
    labTokenFile: secrets.labTokenFile,
    feedMaxAgeMs,
  });
  // feeds:signed: the public feed keys and the bound, for the parts that follow the feeds; on the
  // process runtime also where each says whether it went stale (`lab status`).
  const signedFeeds = defences.feeds === 'signed';
  if (signedFeeds && (input.feedTrustKeys === undefined || input.feedTrustKeys.length === 0)) {
    throw new Error('signed feeds need the feed trust keys');
  }
  const feedFollower = (part: string) =>
    signedFeeds
      ? {
          feedTrust: { keys: input.feedTrustKeys ?? [], maxAgeMs: feedMaxAgeMs },
          ...(input.runtimeKind === 'process' ? { feedStatusFile: feedStatusFileOf(dir, part) } : {}),
        }
      : {};
  const launchOf = (config: PartConfig, entry: string, url: string, mounts: string[] = []): PartLaunch => {
    const configFile = configFileOf(dir, config.part);
    return {
      name: config.part,
      kind: config.kind,
      entry,
      configFile,
      port: config.port,
      url,
      logFile: join(dir, 'logs', `${config.part}.log`),
      mounts: [configFile, ...mounts].map((path) => ({ path })),
      ...(input.partEnv && Object.keys(input.partEnv).length > 0 ? { env: input.partEnv } : {}),
    };
  };
  /** Where the CLI checks a part's health: its host address, or (none) its log. */
  const hostView = (p: PartPlacement) => p.hostUrl ?? p.url;

  const ticketKeys = replicaTicketKeyFiles(dir, secrets.ticketKeyFile, replicaCount);
  const securityParts = replicaAt.map((place, i): PlannedPart<SecurityPartConfig> => {
    const own = ticketKeys[i] as (typeof ticketKeys)[number];
    const config: SecurityPartConfig = {
      ...common(place),
      kind: 'security',
      part: own.part,
      port: place.port,
      home: input.home,
      ticketKeyFile: own.privateFile,
      ...(signedFeeds && secrets.feedKeyFile ? { feedKeyFile: secrets.feedKeyFile } : {}),
      ...(replicaCount > 1
        ? { peerTicketKeyFiles: ticketKeys.filter((k) => k !== own).map((k) => k.publicFile) }
        : {}),
      sealKeyFile: secrets.sealKeyFile,
      ...(mtls ? { caDir } : {}),
      ...(mtls && input.identityTtlSeconds !== undefined
        ? { identityTtlSeconds: input.identityTtlSeconds }
        : {}),
      ...(ownCredentials ? { partCredentialIndexFile: partCredentialIndexFileOf(dir) } : {}),
      ...(place.control && strategy === 'certificate' ? { controlPort: place.control.port } : {}),
      gatewayUrl: gatewayAt.url,
      // edge:tls: its pushes to the gateway check the gateway's certificate like any client of it
      ...(edgeTls ? { gatewayCaFile: caFile } : {}),
      ticketTtlSeconds: 3600,
      challengeTtlSeconds: 60,
      ...(input.auditKey
        ? { auditKeyFile: input.auditKey.privateFile, auditCheckpointsFile: input.auditKey.checkpointsFile }
        : {}),
    };
    const launch = launchOf(config, builtFile('lab', 'security.mjs'), hostView(place));
    // The store's writer: the whole home (store, lab secrets, CA) is its to read and write; with
    // audit:signed also its audit folder, which lives outside the home.
    launch.mounts = [
      { path: input.home, writable: true },
      ...(input.auditKey ? [{ path: input.auditKey.dir, writable: true }] : []),
    ];
    return { config, launch };
  });
  const [securityPart, ...moreSecurityParts] = securityParts as [
    PlannedPart<SecurityPartConfig>,
    ...PlannedPart<SecurityPartConfig>[],
  ];

  const { labTokenFile: _notForTheSink, ...sinkCommon } = common(sinkAt);
  const sinkConfig: SinkPartConfig = {
    ...sinkCommon,
    kind: 'sink',
    part: 'sink',
    port: sinkAt.port,
    readTokenFile: secrets.sinkTokenFile,
  };

  const callers = new Map<string, string[]>();
  for (const s of input.services)
    for (const c of s.calls) callers.set(c, [...(callers.get(c) ?? []), s.name]);
  const services = input.services.map((s): PlannedService => {
    const place = at(s.name);
    const appDir = appDirOf(dir, s.name);
    const identityDir = join(dir, 'services', s.name, 'identity');
    const { labTokenFile, ...shared } = common(place);
    const config: ServicePartConfig = {
      ...shared,
      // The baseline's services are handed the token as before; with credentials of their own, never.
      ...(strategy === 'declared' ? { labTokenFile } : credentialOf(s.name)),
      kind: 'service',
      part: s.name,
      port: place.port,
      appDir: place.appDir ?? appDir,
      peers: Object.fromEntries(s.calls.map((c) => [c, at(c).url])),
      ...(mtls ? { identityDir, caFile } : {}),
      ...feedFollower(s.name),
    };
    const launch = launchOf(config, join(appDir, 'service.mjs'), hostView(place));
    launch.mounts = [{ path: launch.configFile }, ...serviceMounts(config)];
    return {
      definition: s,
      config,
      launch: { ...launch, appDir },
      serviceJson: `${JSON.stringify(
        {
          ...s,
          callers: callers.get(s.name) ?? [],
          // what each caller may ask of this service, resolved from the topology's edges
          peerCalls: Object.fromEntries(
            (callers.get(s.name) ?? []).map((c) => [c, rulesForEdge(input.peerCalls ?? {}, c, s.name)]),
          ),
        },
        null,
        2,
      )}\n`,
      ...(mtls ? { identityDir } : {}),
    };
  });

  // With certificates the gateway needs no lab token: its login relay and the attestation push are
  // authenticated by certificates (the control plane) instead.
  const { labTokenFile: gatewayToken, ...gatewayCommon } = common(gatewayAt);
  const gatewayConfig: GatewayPartConfig = {
    ...gatewayCommon,
    ...(strategy === 'certificate' ? {} : { labTokenFile: gatewayToken }),
    kind: 'gateway',
    part: 'gateway',
    port: gatewayAt.port,
    sealKeyFile: secrets.sealKeyFile,
    services: Object.fromEntries(input.services.map((s) => [s.name, at(s.name).url])),
    ...(mtls ? { identityDir: gatewayIdentityDir, caFile } : {}),
    ...(edgeTls ? { edgeIdentityDir: gatewayIdentityDir } : {}),
    ...credentialOf('gateway'),
    rateLimit: GATEWAY_LIMITS,
    ...(defences.request === 'bound' ? { stateDir: gatewayStateDirOf(dir) } : {}),
    ...feedFollower('gateway'),
  };
  const securityUrl = securityAt.hostUrl ?? securityAt.url;
  const gatewayUrl = gatewayAt.hostUrl ?? gatewayAt.url;

  // The watchman brings a dead part back (process runtime; Docker has its restart policy), with
  // measured attestation re-measures the services on an interval (the runtime, not them), and with
  // mTLS renews the identities, which last minutes.
  const watchman = defences.attestation === 'measured' || input.runtimeKind === 'process' || mtls;
  const supervisorConfig: SupervisorPartConfig = {
    ...common(securityAt),
    host: '127.0.0.1',
    securityUrl,
    kind: 'supervisor',
    part: 'supervisor',
    port: 0,
    home: input.home,
    intervalSeconds: input.attestIntervalSeconds ?? 10,
    ...(control?.hostUrl
      ? { identityDir: supervisorIdentityDir, caFile, controlPlaneUrl: control.hostUrl }
      : {}),
  };

  return {
    security: securityPart,
    securityReplicas: moreSecurityParts,
    sink: {
      config: sinkConfig,
      launch: launchOf(sinkConfig, builtFile('src', 'services', 'sink', 'main.js'), hostView(sinkAt), [
        secrets.sinkTokenFile,
      ]),
    },
    services,
    gateway: {
      config: gatewayConfig,
      launch: withStateDir(
        gatewayConfig.stateDir,
        launchOf(gatewayConfig, builtFile('lab', 'gateway.mjs'), gatewayUrl, [
          ...(gatewayConfig.labTokenFile ? [gatewayConfig.labTokenFile] : []),
          secrets.sealKeyFile,
          ...(mtls ? [gatewayIdentityDir, caFile] : edgeTls ? [gatewayIdentityDir] : []),
          ...(gatewayConfig.partCredentialFile ? [gatewayConfig.partCredentialFile] : []),
        ]),
      ),
    },
    ...(watchman
      ? {
          supervisor: {
            config: supervisorConfig,
            launch: launchOf(supervisorConfig, builtFile('src', 'lab', 'supervisor', 'main.js'), ''),
          },
        }
      : {}),
    securityUrl,
    gatewayUrl,
    ...(control?.hostUrl ? { controlPlaneUrl: control.hostUrl } : {}),
    ...(replicaCount > 1
      ? {
          securityReplicaHosts: replicaAt.map((p, i) => ({
            part: securityPartName(i),
            url: p.hostUrl ?? p.url,
            ...(control && p.control?.hostUrl ? { controlPlaneUrl: p.control.hostUrl } : {}),
          })),
        }
      : {}),
    caDir,
    caFile,
    gatewayIdentityDir,
    supervisorIdentityDir,
    credentialParts: ownCredentials ? ['gateway', ...input.services.map((s) => s.name)] : [],
  };
}

/**
 * What a service reads besides its config, mounted read-only into its container: its own
 * credential (or, in the baseline, the lab token when it reports on itself), its identity and the
 * CA with mTLS. The same at `lab up` and at a restart.
 */
export function serviceMounts(config: ServicePartConfig): { path: string }[] {
  return [
    ...(acceptsSelfReport(config.defences.attestation) && config.labTokenFile ? [config.labTokenFile] : []),
    ...(config.identityDir ? [config.identityDir] : []),
    ...(config.caFile ? [config.caFile] : []),
    ...(config.partCredentialFile ? [config.partCredentialFile] : []),
  ].map((path) => ({ path }));
}

/** The gateway's own folder that outlives it (request:bound), mounted writable into its container. */
export function gatewayStateDirOf(dir: string): string {
  return join(dir, 'gateway', 'state');
}

function withStateDir(stateDir: string | undefined, launch: PartLaunch): PartLaunch {
  if (stateDir === undefined) return launch;
  return { ...launch, mounts: [...(launch.mounts ?? []), { path: stateDir, writable: true }] };
}

export function configFileOf(dir: string, part: string): string {
  return join(dir, 'parts', `${part}.json`);
}

export function builtFile(...parts: string[]): string {
  return join(packageRoot(), 'dist', ...parts);
}
