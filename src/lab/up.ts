import { randomBytes } from 'node:crypto';
import { access, copyFile, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Agent } from 'undici';
import { launchHash } from '../attestation/launch-manifest.js';
import { signsAuditCheckpoints } from '../defences/audit.js';
import { gatewayServerNames } from '../defences/edge.js';
import type { Posture } from '../defences/posture.js';
import { type Ablation, defenceList, defencesFor, labelOf } from '../defences/presets.js';
import { fileError } from '../disk-errors.js';
import { errnoCode, TrustedMsError } from '../errors.js';
import { makeDir } from '../fs-sync.js';
import { resolveKeyDir } from '../home.js';
import { adminChannel } from '../kernel/admin-channel.js';
import { edgeConnectOptions } from '../kernel/edge-client.js';
import { type LabState, labDir, type PartState, readLabState, writeLabState } from '../kernel/lab-state.js';
import { labTopology, selectServices } from '../kernel/topology.js';
import { createLabCa, saveLabCa } from '../pki/ca.js';
import {
  issueServiceCertificate,
  labIdentityTtl,
  MAX_CERT_TTL_SECONDS,
  type ServiceIdentity,
} from '../pki/identity.js';
import { writeIdentity } from '../pki/identity-files.js';
import { certificateEndClock, clientTlsConnector } from '../pki/mtls.js';
import { labFeedMaxAge } from '../protocol/signed-feed.js';
import { auditKeyFiles, ensureAuditKey } from '../store/audit/checkpoint-files.js';
import { runningLabTime } from '../store/lab-clock-mark.js';
import { requireRoomForLab } from './disk.js';
import { prepareLabStore, type StoreChoice, stopLabStore, wantedStore } from './lab-store.js';
import { createPartCredentials } from './part-credentials.js';
import { builtFile, type PlannedPart, partsToPlace, planLab } from './plan.js';
import { waitHealthy } from './readiness.js';
import { codeCopiesDir, hashOfCopy, releaseCopy } from './runtimes/code-copy.js';
import { ProcessRuntime } from './runtimes/process.js';
import type { PartLaunch, PartPlacement, Runtime } from './runtimes/runtime.js';
import {
  createLabSecrets,
  createReplicaTicketKeys,
  feedTrustKeyOf,
  replicaTicketKeyFiles,
} from './secrets.js';
import { checkSecurityReplicas } from './security-replicas.js';

export interface LabUpOptions {
  home: string;
  posture: Posture;
  services?: number;
  runtime?: Runtime;
  healthTimeoutMs?: number;
  /** trusted: how often the supervisor re-measures every service */
  attestIntervalSeconds?: number;
  onProgress?: (step: string) => void;
  /**
   * Defences of the posture to leave out (`lab up --without`): the lab then runs the next weaker
   * strategy for each (src/defences/presets.ts), and its state and every report say so.
   */
  without?: readonly Ablation[];
  /**
   * Variables passed to every part on the operator's explicit say (`lab up --part-env NAME`):
   * nothing of the CLI's environment reaches a part otherwise (src/lab/runtimes/part-env.ts).
   */
  partEnv?: Record<string, string>;
  /**
   * links:mtls: how long an identity lasts (`lab up --identity-ttl`, default
   * DEFAULT_LAB_CERT_TTL_SECONDS); the watchman renews each at half-life after a trusted measurement.
   */
  identityTtlSeconds?: number;
  /**
   * `lab up --store` (and --store-url): where the security service keeps users, keys and the audit
   * log. Undefined: what the home used last, else its files.
   */
  store?: StoreChoice;
  /**
   * `lab up --security-replicas` (default 1): security services on the shared store, each with its
   * own port, identity and ticket key (issue 17). Above 1 needs PostgreSQL and the process runtime.
   */
  securityReplicas?: number;
  /**
   * `lab up --feed-max-age` (seconds, default DEFAULT_FEED_MAX_AGE_SECONDS): with feeds:signed a
   * part refuses to act on a feed older than this (CONTROL_PLANE_STALE)
   */
  feedMaxAgeSeconds?: number;
  /**
   * audit:signed: the key folder holding this home's audit key and checkpoints (default: the
   * users' key folder, `TRUSTED_MS_KEYS` or ~/.trusted-ms/keys)
   */
  auditKeyDir?: string;
}

export interface LabUpResult {
  state: LabState;
  durationMs: number;
  attestation: { name: string; state: string }[];
}

/**
 * The lab home holds the lab token, the ticket-signing and CA keys and the store: anyone who can
 * write into it can replace them (or plant a symlink where one will be written). Like ssh with
 * ~/.ssh, refuse to start in a home that group or others may write.
 */
async function assertPrivateHome(home: string): Promise<void> {
  let mode: number;
  try {
    mode = (await stat(home)).mode;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return; // created 0700 below
    throw new TrustedMsError(
      'LAB_START_FAILED',
      `cannot read the lab home ${home} (${errnoCode(err) ?? 'error'})`,
    );
  }
  if (process.platform !== 'win32' && (mode & 0o022) !== 0) {
    const octal = (mode & 0o777).toString(8).padStart(4, '0');
    throw new TrustedMsError(
      'LAB_HOME_UNSAFE',
      `the lab home ${home} has mode ${octal}: group or others can write it, and so replace the lab's keys and token`,
      { actions: [`chmod go-w ${home}`, 'or use another --home'] },
    );
  }
}

/**
 * Brings the lab up: secrets and (trusted) a CA, the security service and the attacker's sink, one
 * code folder per service, registration and attestation of every service, then the services and
 * the gateway together (it needs only the security service). Any failure stops what was started and
 * names the part, with its last log lines.
 */
export async function labUp(opts: LabUpOptions): Promise<LabUpResult> {
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const progress = opts.onProgress ?? (() => undefined);
  const identityTtlSeconds = labIdentityTtl(opts.identityTtlSeconds);
  const feedMaxAgeSeconds = labFeedMaxAge(opts.feedMaxAgeSeconds);
  const runtime: Runtime = opts.runtime ?? new ProcessRuntime();
  await assertPrivateHome(opts.home);
  const securityReplicas = opts.securityReplicas ?? 1;
  checkSecurityReplicas(securityReplicas, wantedStore(opts.home, opts.store, runtime.kind), runtime.kind);
  const existing = await readLabState(opts.home);
  if (existing) {
    const alive = await Promise.all(existing.parts.map((p) => runtime.isAlive(p)));
    if (alive.some(Boolean)) {
      throw new TrustedMsError(
        'LAB_ALREADY_RUNNING',
        `a lab (${existing.posture}) is already running in ${opts.home}`,
        {
          actions: ['stop it with `trusted-ms lab down`, or use another --home'],
        },
      );
    }
  }
  const bundle = builtFile('lab', 'service.mjs');
  for (const file of [bundle, builtFile('lab', 'security.mjs'), builtFile('lab', 'gateway.mjs')]) {
    await access(file).catch(() => {
      throw new TrustedMsError('LAB_START_FAILED', `the bundle ${file} is missing`, {
        actions: ['build first: npm run build'],
      });
    });
  }

  await requireRoomForLab(opts.home);
  const dir = labDir(opts.home);
  // A previous lab's code copies are read-only folders: made writable so that they can go.
  await releaseCopy(codeCopiesDir(dir));
  await rm(dir, { recursive: true, force: true });
  for (const sub of ['parts', 'logs', 'services']) {
    await makeDir(join(dir, sub)).catch((err: unknown) => {
      throw fileError(join(dir, sub), 'create', err);
    });
  }
  const labId = randomBytes(4).toString('hex');
  const posture = opts.posture;
  const without = [...(opts.without ?? [])];
  const defences = defencesFor(posture, without);
  const mtls = defences.links === 'mtls';
  const edgeTls = defences.edge === 'tls';
  const measured = defences.attestation === 'measured';
  const topology = labTopology();
  const services = selectServices(topology, opts.services ?? 20);
  progress(
    `lab ${labId}: ${labelOf(posture, without)} (${defenceList(defences).join(' ')}), ${services.length} services, ${runtime.kind} runtime`,
  );

  const secrets = await createLabSecrets(dir);
  const auditKey = signsAuditCheckpoints(defences)
    ? auditKeyFiles(opts.auditKeyDir ?? resolveKeyDir(), opts.home)
    : undefined;
  if (auditKey) await ensureAuditKey(auditKey);
  await runtime.prepare({ labId, posture, onProgress: progress });
  // Addresses come from the runtime: 127.0.0.1 ports for processes, container names on the lab's
  // network for Docker (where only the gateway and the security service are reachable from here).
  const placements = await runtime.place(partsToPlace(dir, defences, services, securityReplicas));
  const plan = planLab({
    labId,
    home: opts.home,
    dir,
    posture,
    defences,
    services,
    peerCalls: topology.peerCalls,
    runtimeKind: runtime.kind,
    placements,
    secrets,
    ...(opts.attestIntervalSeconds === undefined
      ? {}
      : { attestIntervalSeconds: opts.attestIntervalSeconds }),
    ...(opts.partEnv === undefined ? {} : { partEnv: opts.partEnv }),
    identityTtlSeconds,
    securityReplicas,
    feedMaxAgeSeconds,
    ...(defences.feeds === 'signed' && secrets.feedKeyFile
      ? { feedTrustKeys: [await feedTrustKeyOf(secrets.feedKeyFile)] }
      : {}),
    ...(auditKey ? { auditKey } : {}),
  });
  await createReplicaTicketKeys(replicaTicketKeyFiles(dir, secrets.ticketKeyFile, securityReplicas));
  await createPartCredentials(dir, plan.credentialParts);
  const ca = mtls || edgeTls ? await createLabCa({ labId }) : undefined;
  if (ca) await saveLabCa(ca, plan.caDir);

  const writeConfig = async ({ config, launch }: PlannedPart): Promise<PartLaunch> => {
    await writeFile(launch.configFile, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
    return launch;
  };

  // Last before the parts: a server started here must not be left behind by a failure above.
  const store = await prepareLabStore(opts.home, opts.store, runtime.kind, progress);
  const parts: PartState[] = [];
  const state = (): LabState => ({
    version: 1,
    labId,
    runtime: runtime.kind,
    ...(runtime.engineState?.() ? { engine: runtime.engineState() } : {}),
    posture,
    ...(without.length ? { without } : {}),
    defences,
    startedAt,
    gatewayUrl: plan.gatewayUrl,
    ...(ca ? { caFile: plan.caFile } : {}),
    securityUrl: plan.securityUrl,
    ...(plan.controlPlaneUrl ? { controlPlaneUrl: plan.controlPlaneUrl } : {}),
    ...(plan.securityReplicaHosts ? { securityReplicas: plan.securityReplicaHosts } : {}),
    ...(mtls ? { identityTtlSeconds } : {}),
    feedMaxAgeSeconds,
    store,
    parts,
  });
  const healthTimeout = opts.healthTimeoutMs ?? 20_000;
  // The replicas past the first start in the background (below): a failure meanwhile waits for
  // them, so that none is started after the others were stopped.
  let securityHealthy: Promise<void> = Promise.resolve();

  try {
    // 1. the security service
    progress(
      plan.securityReplicas.length > 0
        ? `starting the security service (${plan.securityReplicas.length + 1} replicas)`
        : 'starting the security service',
    );
    const security = await runtime.start(await writeConfig(plan.security));
    parts.push(security);
    await writeLabState(opts.home, state());
    // While the security service boots (~1-2 s, the first half of lab up), the services' code
    // folders are written and measured: neither needs it.
    // The other replicas on the same store (issue 17), once the first is healthy: it has set the
    // lab's clock anchor by then, which they take their time from (one clock for all), and all
    // are up before the registration, so that the gateway and the services find every one.
    securityHealthy = waitHealthy(runtime, security, healthTimeout).then(async () => {
      if (plan.securityReplicas.length === 0) return;
      const replicas: PartState[] = [];
      for (const planned of plan.securityReplicas) {
        const replica = await runtime.start(await writeConfig(planned));
        replicas.push(replica);
        parts.push(replica);
      }
      await writeLabState(opts.home, state());
      await Promise.all(replicas.map((p) => waitHealthy(runtime, p, healthTimeout)));
    });
    securityHealthy.catch(() => undefined);

    // 1b. the attacker's sink: a part of the lab so that, on Docker too, it sits on the services'
    //     own network (they have no way out); only `attack simulate` sends it anything
    const sink = await runtime.start(await writeConfig(plan.sink));
    parts.push(onNetwork(sink, placements.get('sink') as PartPlacement));
    await writeLabState(opts.home, state());
    // Waited for with the services, not before them: the sink's start-up overlaps theirs.
    const sinkHealthy = waitHealthy(runtime, sink, healthTimeout);
    sinkHealthy.catch(() => undefined);

    // 2. each service's code folder: the bundle and its definition, the tree attestation measures
    const launches = await Promise.all(
      plan.services.map(async (planned): Promise<PartLaunch> => {
        const appDir = planned.launch.appDir as string;
        await mkdir(appDir, { recursive: true });
        await copyFile(bundle, join(appDir, 'service.mjs'));
        await writeFile(join(appDir, 'service.json'), planned.serviceJson);
        return writeConfig(planned);
      }),
    );

    // 3. registration (a fresh deployment is the known-good code) and, measured from outside,
    //    attestation, which (mTLS) earns each service its identity certificate
    progress(`measuring ${launches.length} services`);
    const measurements = await Promise.all(
      launches.map(async (l) => ({
        name: l.name,
        hash: await runtime.measure({
          name: l.name,
          appDir: l.appDir as string,
          configFile: l.configFile,
          ...(l.env ? { env: l.env } : {}),
        }),
      })),
    );
    await securityHealthy;
    // The lab token goes where the security service proved its identity, when it can (admin-channel.ts).
    const admin = await adminChannel(opts.home, state());
    await admin.call('/v1/admin/services/register', { body: { services: measurements } });
    let attestation: { name: string; state: string }[] = measurements.map((m) => ({
      name: m.name,
      state: 'registered',
    }));
    if (measured || mtls) {
      const result = await admin.call<{
        services: { name: string; state: string }[];
        identities: Record<string, ServiceIdentity>;
      }>('/v1/admin/attestations', { body: { reports: measurements, issueIdentity: mtls } });
      attestation = result.services.map((s) => ({ name: s.name, state: s.state }));
      for (const s of plan.services) {
        if (s.identityDir === undefined) continue;
        const identity = result.identities[s.config.part];
        if (!identity)
          throw new TrustedMsError('LAB_START_FAILED', `${s.config.part} failed attestation at start`);
        await writeIdentity(s.identityDir, identity);
      }
    }

    // 4. the services, all at once
    // edge:tls without mTLS: nothing renews the gateway's identity (the watchman renews only with
    // mTLS, through the control plane), so it lasts as long as any identity may (a day).
    const serverNames = gatewayServerNames(defences.edge, plan.security.config.gatewayUrl);
    const gatewayIdentity = ca
      ? await issueServiceCertificate(ca, {
          name: 'gateway',
          kind: 'gateway',
          ttlSeconds: mtls ? identityTtlSeconds : MAX_CERT_TTL_SECONDS,
          ...(serverNames ? { serverNames } : {}),
        })
      : undefined;
    if (gatewayIdentity) await writeIdentity(plan.gatewayIdentityDir, gatewayIdentity);
    progress(`starting ${launches.length} services`);
    const startedOne = counter(launches.length, 'started', progress);
    const running = await Promise.all(
      launches.map(async (l) => {
        // The copy a service runs from (process runtime) must be the code just registered: a file
        // swapped in between the measurement above and the start gives a copy of another name.
        // Measured: bound to the launch manifest the runtime recorded, which must be the registered one.
        const expected = measurements.find((m) => m.name === l.name)?.hash;
        const part = await runtime.start(l, {
          beforeRun: async (p) => {
            if (p.codeCopy === undefined) return;
            const ran = p.manifest ? launchHash(hashOfCopy(p.codeCopy), p.manifest) : hashOfCopy(p.codeCopy);
            if (ran !== expected)
              throw new TrustedMsError(
                'LAB_START_FAILED',
                `${l.name}: its code changed between its measurement and its start, or its launch did (${ran}, registered ${expected})`,
              );
          },
        });
        startedOne();
        return part;
      }),
    );
    parts.push(...running);
    await writeLabState(opts.home, state());

    // 5. the gateway, the only published entry, started with the services rather than after them
    //    (it needs only the security service): its ~1 s of start-up overlaps theirs. lab up returns
    //    when all are healthy; until then a request may get SERVICE_UNAVAILABLE, as during a restart.
    progress('starting the gateway');
    // Made here: a folder the engine had to create for a bind mount would be root's.
    if (plan.gateway.config.stateDir)
      await mkdir(plan.gateway.config.stateDir, { recursive: true, mode: 0o700 });
    const gateway = await runtime.start(await writeConfig(plan.gateway));
    parts.push(gateway);
    await writeLabState(opts.home, state());
    const caPem = ca?.certPem;
    const healthy = counter(running.length, 'healthy', progress);
    await Promise.all([
      ...running.map(async (p) => {
        await waitHealthy(
          runtime,
          p,
          healthTimeout,
          gatewayIdentity && caPem
            ? new Agent({ connect: clientTlsConnector(gatewayIdentity, caPem, p.name) })
            : undefined,
        );
        healthy();
      }),
      waitHealthy(
        runtime,
        gateway,
        healthTimeout,
        edgeTls && caPem
          ? new Agent({
              connect: edgeConnectOptions(
                caPem,
                undefined,
                certificateEndClock(runningLabTime(opts.home, labId)),
              ),
            })
          : undefined,
      ),
      sinkHealthy,
    ]);

    // 6. the watchman, when the plan has one (with mTLS, with an identity of its own: it tells the
    //    security service from a process on its port by certificate)
    if (plan.supervisor) {
      if (ca && plan.supervisor.config.identityDir) {
        await writeIdentity(
          plan.supervisor.config.identityDir,
          await issueServiceCertificate(ca, {
            name: 'supervisor',
            kind: 'supervisor',
            ttlSeconds: identityTtlSeconds,
          }),
        );
      }
      parts.push(await runtime.start(await writeConfig(plan.supervisor)));
      await writeLabState(opts.home, state());
    }
    return { state: state(), durationMs: Math.round(performance.now() - started), attestation };
  } catch (err) {
    await securityHealthy.catch(() => undefined);
    await Promise.all(parts.map((p) => runtime.stop(p).catch(() => undefined)));
    await runtime.teardown(labId).catch(() => []);
    await stopLabStore(opts.home).catch(() => undefined);
    await rm(join(dir, 'state.json'), { force: true });
    throw err;
  }
}

/** A part published on this host keeps, for the other parts, its address on the lab's network. */
function onNetwork(part: PartState, at: PartPlacement): PartState {
  return at.hostUrl !== undefined && at.hostUrl !== at.url ? { ...part, networkUrl: at.url } : part;
}

/** Counts parts as they get somewhere, saying so at most once a second (and at the last). */
function counter(total: number, what: string, progress: (step: string) => void): () => void {
  let n = 0;
  let said = performance.now();
  return () => {
    n += 1;
    if (n === total || performance.now() - said >= 1000) {
      said = performance.now();
      progress(`${what} ${n}/${total}`);
    }
  };
}
