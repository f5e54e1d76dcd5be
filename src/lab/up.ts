import { randomBytes } from 'node:crypto';
import { access, copyFile, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Agent } from 'undici';
import type { Posture } from '../defences/posture.js';
import { type Ablation, defenceList, defencesFor, labelOf } from '../defences/presets.js';
import { fileError } from '../disk-errors.js';
import { errnoCode, TrustedMsError } from '../errors.js';
import { makeDir } from '../fs-sync.js';
import { jsonRequest } from '../kernel/http-client.js';
import { type LabState, labDir, type PartState, readLabState, writeLabState } from '../kernel/lab-state.js';
import type {
  GatewayPartConfig,
  PartConfig,
  SecurityPartConfig,
  ServicePartConfig,
  SinkPartConfig,
  SupervisorPartConfig,
} from '../kernel/part-config.js';
import { labTopology, type ServiceDefinition, selectServices } from '../kernel/topology.js';
import { packageRoot } from '../paths.js';
import { createLabCa, saveLabCa } from '../pki/ca.js';
import { issueServiceCertificate, type ServiceIdentity } from '../pki/identity.js';
import { writeIdentity } from '../pki/identity-files.js';
import { clientTlsConnector } from '../pki/mtls.js';
import { requireRoomForLab } from './disk.js';
import { ProcessRuntime } from './runtimes/process.js';
import type { PartLaunch, PartPlacement, Runtime } from './runtimes/runtime.js';
import { createLabSecrets } from './secrets.js';

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

function builtFile(...parts: string[]): string {
  return join(packageRoot(), 'dist', ...parts);
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
  const runtime = opts.runtime ?? new ProcessRuntime();
  await assertPrivateHome(opts.home);
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
  const measured = defences.attestation === 'measured';
  const services = selectServices(labTopology(), opts.services ?? 20);
  progress(
    `lab ${labId}: ${labelOf(posture, without)} (${defenceList(defences).join(' ')}), ${services.length} services, ${runtime.kind} runtime`,
  );

  const secrets = await createLabSecrets(dir);
  const caDir = join(dir, 'ca');
  const ca = mtls ? await createLabCa({ labId }) : undefined;
  if (ca) await saveLabCa(ca, caDir);
  const caFile = join(caDir, 'ca.pem');

  await runtime.prepare({ labId, posture, onProgress: progress });
  // Addresses come from the runtime: 127.0.0.1 ports for processes, container names on the lab's
  // network for Docker (where only the gateway and the security service are reachable from here).
  const scheme: 'http' | 'https' = mtls ? 'https' : 'http';
  const appDirOf = (name: string) => join(dir, 'services', name, 'app');
  const placed = await runtime.place([
    { name: 'security', kind: 'security', scheme: 'http' },
    { name: 'gateway', kind: 'gateway', scheme: 'http' },
    { name: 'sink', kind: 'sink', scheme: 'http' },
    ...services.map((s) => ({ name: s.name, kind: 'service' as const, scheme, appDir: appDirOf(s.name) })),
  ]);
  const at = (name: string): PartPlacement => placed.get(name) as PartPlacement;
  const securityAt = at('security');
  const gatewayAt = at('gateway');
  const securityUrl = securityAt.hostUrl ?? securityAt.url;
  const gatewayUrl = gatewayAt.hostUrl ?? gatewayAt.url;
  const serviceUrl = new Map(services.map((s) => [s.name, at(s.name).url]));
  const labTokenFile = secrets.labTokenFile;
  const common = (p: PartPlacement) => ({
    labId,
    posture,
    defences,
    host: p.listenHost,
    securityUrl: securityAt.url,
    labTokenFile,
  });

  const writeConfig = async (config: PartConfig): Promise<string> => {
    const file = join(dir, 'parts', `${config.part}.json`);
    await writeFile(file, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
    return file;
  };
  const launchOf = (
    name: string,
    kind: PartLaunch['kind'],
    entry: string,
    configFile: string,
    port: number,
    url: string,
    mounts: string[] = [],
  ): PartLaunch => ({
    name,
    kind,
    entry,
    configFile,
    port,
    url,
    logFile: join(dir, 'logs', `${name}.log`),
    mounts: [configFile, ...mounts].map((path) => ({ path })),
  });
  /** Where the CLI checks a part's health: its host address, or (none) its log. */
  const hostView = (p: PartPlacement) => p.hostUrl ?? p.url;

  const parts: PartState[] = [];
  const state = (): LabState => ({
    version: 1,
    labId,
    runtime: runtime.kind,
    posture,
    ...(without.length ? { without } : {}),
    defences,
    startedAt,
    gatewayUrl,
    securityUrl,
    parts,
  });
  const healthTimeout = opts.healthTimeoutMs ?? 20_000;

  try {
    // 1. the security service
    const securityConfig: SecurityPartConfig = {
      ...common(securityAt),
      kind: 'security',
      part: 'security',
      port: securityAt.port,
      home: opts.home,
      ticketKeyFile: secrets.ticketKeyFile,
      sealKeyFile: secrets.sealKeyFile,
      ...(mtls ? { caDir } : {}),
      gatewayUrl: gatewayAt.url,
      ticketTtlSeconds: 3600,
      challengeTtlSeconds: 60,
    };
    const securityLaunch = launchOf(
      'security',
      'security',
      builtFile('lab', 'security.mjs'),
      await writeConfig(securityConfig),
      securityAt.port,
      hostView(securityAt),
    );
    // The store's single writer: the whole home (store, lab secrets, CA) is its to read and write.
    securityLaunch.mounts = [{ path: opts.home, writable: true }];
    progress('starting the security service');
    const security = await runtime.start(securityLaunch);
    parts.push(security);
    await writeLabState(opts.home, state());
    // While the security service boots (~1-2 s, the first half of lab up), the services' code
    // folders are written and measured: neither needs it.
    const securityHealthy = waitHealthy(runtime, security, healthTimeout);
    securityHealthy.catch(() => undefined);

    // 1b. the attacker's sink: a part of the lab so that, on Docker too, it sits on the services'
    //     own network (they have no way out); only `attack simulate` sends it anything
    const sinkAt = at('sink');
    const sinkConfig: SinkPartConfig = { ...common(sinkAt), kind: 'sink', part: 'sink', port: sinkAt.port };
    const sink = await runtime.start(
      launchOf(
        'sink',
        'sink',
        builtFile('src', 'services', 'sink', 'main.js'),
        await writeConfig(sinkConfig),
        sinkAt.port,
        hostView(sinkAt),
        [labTokenFile],
      ),
    );
    parts.push(onNetwork(sink, sinkAt));
    await writeLabState(opts.home, state());
    // Waited for with the services, not before them: the sink's start-up overlaps theirs.
    const sinkHealthy = waitHealthy(runtime, sink, healthTimeout);
    sinkHealthy.catch(() => undefined);

    // 2. each service's code folder: the bundle and its definition, the tree attestation measures
    const callers = new Map<string, string[]>();
    for (const s of services) for (const c of s.calls) callers.set(c, [...(callers.get(c) ?? []), s.name]);
    const launches = await Promise.all(
      services.map(async (s): Promise<PartLaunch> => {
        const base = join(dir, 'services', s.name);
        const appDir = appDirOf(s.name);
        const place = at(s.name);
        await mkdir(appDir, { recursive: true });
        await copyFile(bundle, join(appDir, 'service.mjs'));
        await writeFile(join(appDir, 'service.json'), serviceJson(s, callers.get(s.name) ?? []));
        const config: ServicePartConfig = {
          ...common(place),
          kind: 'service',
          part: s.name,
          port: place.port,
          appDir: place.appDir ?? appDir,
          peers: Object.fromEntries(s.calls.map((c) => [c, serviceUrl.get(c) as string])),
          ...(mtls ? { identityDir: join(base, 'identity'), caFile } : {}),
        };
        return {
          ...launchOf(
            s.name,
            'service',
            join(appDir, 'service.mjs'),
            await writeConfig(config),
            config.port,
            hostView(place),
            [
              ...(defences.attestation === 'self' ? [labTokenFile] : []),
              ...(mtls ? [join(base, 'identity'), caFile] : []),
            ],
          ),
          appDir,
        };
      }),
    );

    // 3. registration (a fresh deployment is the known-good code) and, measured from outside,
    //    attestation, which (mTLS) earns each service its identity certificate
    progress(`measuring ${launches.length} services`);
    const measurements = await Promise.all(
      launches.map(async (l) => ({
        name: l.name,
        hash: await runtime.measure({ name: l.name, appDir: l.appDir as string }),
      })),
    );
    await securityHealthy;
    await jsonRequest(`${securityUrl}/v1/admin/services/register`, {
      token: secrets.labToken,
      body: { services: measurements },
    });
    let attestation: { name: string; state: string }[] = measurements.map((m) => ({
      name: m.name,
      state: 'registered',
    }));
    if (measured || mtls) {
      const result = await jsonRequest<{
        services: { name: string; state: string }[];
        identities: Record<string, ServiceIdentity>;
      }>(`${securityUrl}/v1/admin/attestations`, {
        token: secrets.labToken,
        body: { reports: measurements, issueIdentity: mtls },
      });
      attestation = result.services.map((s) => ({ name: s.name, state: s.state }));
      for (const s of mtls ? services : []) {
        const identity = result.identities[s.name];
        if (!identity) throw new TrustedMsError('LAB_START_FAILED', `${s.name} failed attestation at start`);
        await writeIdentity(join(dir, 'services', s.name, 'identity'), identity);
      }
    }

    // 4. the services, all at once
    const gatewayIdentityDir = join(dir, 'gateway', 'identity');
    const gatewayIdentity = ca
      ? await issueServiceCertificate(ca, { name: 'gateway', kind: 'gateway' })
      : undefined;
    if (gatewayIdentity) await writeIdentity(gatewayIdentityDir, gatewayIdentity);
    progress(`starting ${launches.length} services`);
    const startedOne = counter(launches.length, 'started', progress);
    const running = await Promise.all(
      launches.map(async (l) => {
        const part = await runtime.start(l);
        startedOne();
        return part;
      }),
    );
    parts.push(...running);
    await writeLabState(opts.home, state());

    // 5. the gateway, the only published entry, started with the services rather than after them
    //    (it needs only the security service): its ~1 s of start-up overlaps theirs. lab up returns
    //    when all are healthy; until then a request may get SERVICE_UNAVAILABLE, as during a restart.
    const gatewayConfig: GatewayPartConfig = {
      ...common(gatewayAt),
      kind: 'gateway',
      part: 'gateway',
      port: gatewayAt.port,
      sealKeyFile: secrets.sealKeyFile,
      services: Object.fromEntries(serviceUrl),
      ...(mtls ? { identityDir: gatewayIdentityDir, caFile } : {}),
      // Per user: about what one of the load test's 150 users gets at saturation (~60/s), far below
      // what one flooding user pushes through (measured 400-4300/s, dos.request-flood); over it a
      // user waits its turn (up to 10 s, ~1,000 requests: more than the flood keeps in flight,
      // since a refused client asks again at once) rather than spinning on 429s.
      // Per client address: high, since the load test's users may share one. Failed logins per
      // address: a few typos' worth, then one a second; and two login steps in flight per address,
      // the rest queued, so one address never holds all the password hashing (dos.login-flood).
      rateLimit: {
        perUser: 100,
        userBurst: 200,
        userMaxWaitMs: 10_000,
        perClient: 4000,
        burst: 4000,
        loginsPerClient: 50,
        loginFailuresPerClient: 1,
        loginFailureBurst: 10,
        loginsInFlightPerClient: 2,
      },
    };
    progress('starting the gateway');
    const gateway = await runtime.start(
      launchOf(
        'gateway',
        'gateway',
        builtFile('lab', 'gateway.mjs'),
        await writeConfig(gatewayConfig),
        gatewayAt.port,
        gatewayUrl,
        [labTokenFile, secrets.sealKeyFile, ...(mtls ? [gatewayIdentityDir, caFile] : [])],
      ),
    );
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
      waitHealthy(runtime, gateway, healthTimeout),
      sinkHealthy,
    ]);

    // 6. the watchman: brings a dead part back (process runtime; Docker has its restart policy) and,
    //    with measured attestation, re-measures the services on an interval (the runtime, not them)
    if (measured || runtime.kind === 'process') {
      const supervisorConfig: SupervisorPartConfig = {
        ...common(securityAt),
        host: '127.0.0.1',
        securityUrl,
        kind: 'supervisor',
        part: 'supervisor',
        port: 0,
        home: opts.home,
        intervalSeconds: opts.attestIntervalSeconds ?? 10,
      };
      parts.push(
        await runtime.start(
          launchOf(
            'supervisor',
            'supervisor',
            builtFile('src', 'lab', 'supervisor', 'main.js'),
            await writeConfig(supervisorConfig),
            0,
            '',
          ),
        ),
      );
      await writeLabState(opts.home, state());
    }
    return { state: state(), durationMs: Math.round(performance.now() - started), attestation };
  } catch (err) {
    await Promise.all(parts.map((p) => runtime.stop(p).catch(() => undefined)));
    await runtime.teardown(labId).catch(() => []);
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

function serviceJson(s: ServiceDefinition, callers: string[]): string {
  return `${JSON.stringify({ ...s, callers }, null, 2)}\n`;
}

/** Polls a part's /healthz until it answers, its process dies, or time runs out. */
export async function waitHealthy(
  runtime: Runtime,
  part: PartState,
  timeoutMs: number,
  dispatcher?: Agent,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let last = '';
  try {
    while (performance.now() < deadline) {
      if (part.internal) {
        // Not reachable from this host (a service on the lab's internal network): its own log
        // line says when it listens, as a wait-for-log strategy.
        if (/ listening on /.test(await runtime.logTail(part, 50))) return;
        last = 'no "listening" line in its log yet';
        if (!(await runtime.isAlive(part))) break;
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      try {
        await jsonRequest(`${part.url}/healthz`, { timeoutMs: 1000, ...(dispatcher ? { dispatcher } : {}) });
        return;
      } catch (err) {
        last = (err as Error).message;
      }
      if (!(await runtime.isAlive(part))) break;
      // A refused connection (and, for a process, a liveness check) costs next to nothing: poll often,
      // so a part is seen ~25 ms after it listens. A container's liveness is an engine call: 100 ms.
      await new Promise((r) => setTimeout(r, runtime.kind === 'process' ? 25 : 100));
    }
  } finally {
    await dispatcher?.close();
  }
  const tail = await runtime.logTail(part, 15);
  throw new TrustedMsError(
    'LAB_START_FAILED',
    `${part.name} did not become healthy (${last || 'exited'})${tail ? `\n${tail}` : ''}`,
    {
      actions: [`see its log: ${part.logFile}`],
    },
  );
}
