import { Flags } from '@oclif/core';
import { BaseCommand } from '../../src/command-support/base-command.js';
import { onInterrupt } from '../../src/command-support/interrupt.js';
import { renderTable } from '../../src/command-support/table.js';
import { POSTURES, parsePosture } from '../../src/defences/posture.js';
import { ABLATION_NAMES, defenceList, labelOf, parseAblations } from '../../src/defences/presets.js';
import { TrustedMsError } from '../../src/errors.js';
import { fdLimitWarning } from '../../src/lab/fd-limit.js';
import { closableRuntime, stopInterruptedUp } from '../../src/lab/interrupted-up.js';
import { STORE_CHOICES, type StoreChoice } from '../../src/lab/lab-store.js';
import { passThrough } from '../../src/lab/runtimes/part-env.js';
import { chooseRuntime, RUNTIME_CHOICES, type RuntimeChoice } from '../../src/lab/runtimes/select.js';
import { DEFAULT_SECURITY_REPLICAS, MAX_SECURITY_REPLICAS } from '../../src/lab/security-replicas.js';
import { type LabUpResult, labUp } from '../../src/lab/up.js';
import {
  DEFAULT_LAB_CERT_TTL_SECONDS,
  MAX_CERT_TTL_SECONDS,
  MIN_LAB_CERT_TTL_SECONDS,
} from '../../src/pki/identity.js';
import {
  DEFAULT_FEED_MAX_AGE_SECONDS,
  MAX_FEED_MAX_AGE_SECONDS,
  MIN_FEED_MAX_AGE_SECONDS,
} from '../../src/protocol/signed-feed.js';

export type LabUpCommandResult = LabUpResult;

export default class LabUp extends BaseCommand {
  static override summary = 'Start the lab: security service, gateway and the sample microservices.';
  static override description =
    "Runs every part as a container on the local Docker engine (or, with --runtime swarm, the sample services as Docker Swarm services: docs/swarm.md) (images built here, no registry; only the gateway and the security service's admin port published, on 127.0.0.1), or as local processes on 127.0.0.1 when no engine answers or with --runtime process. Registers each service's code hash; in the trusted posture also measures it from outside and issues each service an mTLS identity. Warns, with the numbers, when `ulimit -n` is below what the gateway of a lab this size needs under 150 clients. Signals: on SIGINT (Ctrl-C) or SIGTERM during start, everything started so far is stopped at once (as `lab down` does) and it exits 130 or 143; after SIGKILL, the next `lab down` stops what was started (processes found by their config under --home; on Docker, `lab down --all` removes containers by label).";
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --posture paper',
    '<%= config.bin %> <%= command.id %> --posture trusted --without links:mtls',
    '<%= config.bin %> <%= command.id %> --without request:bound --without limits:on --runtime process',
    '<%= config.bin %> <%= command.id %> --posture none --services 5 --json',
    '<%= config.bin %> <%= command.id %> --runtime docker',
    '<%= config.bin %> <%= command.id %> --runtime process --identity-ttl 60',
    '<%= config.bin %> <%= command.id %> --runtime docker --base-image node:24-slim',
    '<%= config.bin %> <%= command.id %> --runtime swarm --replicas 2',
    '<%= config.bin %> <%= command.id %> --runtime process --store postgres',
    '<%= config.bin %> <%= command.id %> --runtime process --store postgres --security-replicas 2',
    '<%= config.bin %> <%= command.id %> --runtime process --store postgres --store-url postgres://tms:secret@db.example:5432/tms',
    'LD_PRELOAD=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 FAKETIME=-1h <%= config.bin %> <%= command.id %> --runtime process --part-env LD_PRELOAD --part-env FAKETIME',
  ];
  static override flags = {
    'key-dir': Flags.string({
      description:
        "audit:signed: the key folder that keeps the lab's audit key and signed checkpoints, out of the lab home [default: $TRUSTED_MS_KEYS or ~/.trusted-ms/keys]",
    }),
    posture: Flags.string({ description: 'security posture', options: [...POSTURES], default: 'trusted' }),
    without: Flags.string({
      description:
        "leave one of the posture's defences out (repeatable): it runs the next weaker strategy instead, and lab status and every report say so",
      options: [...ABLATION_NAMES],
      multiple: true,
    }),
    services: Flags.integer({
      description: 'how many of the 20 services (their callees come too)',
      min: 1,
      max: 20,
      default: 20,
    }),
    runtime: Flags.string({
      description: 'where parts run: auto picks docker when an engine answers, else process',
      options: [...RUNTIME_CHOICES],
      default: 'auto',
    }),
    replicas: Flags.integer({
      description: 'swarm: tasks per sample service (the engine spreads calls over them by DNS round robin)',
      min: 1,
      max: 5,
      default: 1,
    }),
    'base-image': Flags.string({
      description:
        "Docker: build the lab's images on this local image (e.g. node:24-slim); when it is not present locally (nothing is pulled), the host's Node is used FROM scratch",
      env: 'TRUSTED_MS_BASE_IMAGE',
    }),
    'identity-ttl': Flags.integer({
      description: `trusted (links:mtls): seconds every part's identity certificate lasts; renewed at half-life, only after a trusted measurement of the service [default: ${DEFAULT_LAB_CERT_TTL_SECONDS}]`,
      min: MIN_LAB_CERT_TTL_SECONDS,
      max: MAX_CERT_TTL_SECONDS,
    }),
    'feed-max-age': Flags.integer({
      description: `trusted (feeds:signed): seconds a part acts on its last signed revocation list and attestation table; past it, the requests that depend on them are refused with CONTROL_PLANE_STALE (503) until a fresh feed arrives. The security service re-signs every feed at a sixth of it [default: ${DEFAULT_FEED_MAX_AGE_SECONDS}]`,
      min: MIN_FEED_MAX_AGE_SECONDS,
      max: MAX_FEED_MAX_AGE_SECONDS,
    }),
    store: Flags.string({
      description:
        "where the security service keeps users, keys, services and the audit log: lowdb, the lab home's files (no server), or postgres, a PostgreSQL database (process runtime only, for now). Without --store-url the lab creates its own server (initdb, on first use) and starts it on 127.0.0.1; `lab down` stops it, `lab down --purge` drops its data [default: what this home used last, else lowdb]",
      options: [...STORE_CHOICES],
    }),
    'store-url': Flags.string({
      description:
        'with --store postgres: use this existing server (postgres://user:password@host:port/database) instead of starting one; kept 0600 in the lab home, never printed with its password',
      dependsOn: ['store'],
    }),
    'security-replicas': Flags.integer({
      description:
        'security service replicas on the shared store, each with its own port, identity and ticket key; the gateway spreads logins over them and fails over when one dies (2 or more need --store postgres; process runtime only, for now)',
      min: 1,
      max: MAX_SECURITY_REPLICAS,
      default: DEFAULT_SECURITY_REPLICAS,
    }),
    'part-env': Flags.string({
      description:
        'process runtime: pass this variable of your environment, with its value, to every part (repeatable). Nothing else of your environment reaches the parts; what you name here runs in all of them unmeasured (e.g. LD_PRELOAD for libfaketime)',
      multiple: true,
    }),
  };

  async run(): Promise<LabUpCommandResult> {
    const { flags } = await this.parse(LabUp);
    const { runtime, reason } = await chooseRuntime(flags.runtime as RuntimeChoice, {
      ...(flags['base-image'] ? { baseImage: flags['base-image'] } : {}),
      replicas: flags.replicas,
    });
    if (flags.replicas !== 1 && runtime.kind !== 'swarm') {
      this.warn(
        `--replicas ${flags.replicas} is ignored: only the swarm runtime runs a service as several tasks`,
      );
    }
    this.logToStderr(`… runtime ${runtime.kind} (${reason})`);
    if (flags['base-image'] && runtime.kind === 'process') {
      // Said rather than silently dropped: the flag (or TRUSTED_MS_BASE_IMAGE) only shapes Docker images.
      this.warn(`--base-image ${flags['base-image']} is ignored: local processes run on this host's Node`);
    }
    const posture = parsePosture(flags.posture);
    const without = parseAblations(flags.without ?? [], posture);
    const partEnv = flags['part-env'] === undefined ? undefined : passThrough(flags['part-env']);
    if (partEnv !== undefined && runtime.kind !== 'process') {
      this.warn(`--part-env is ignored: containers get their own environment`);
    }
    if (flags['store-url'] !== undefined && flags.store !== 'postgres') {
      throw new TrustedMsError('USAGE', '--store-url needs --store postgres');
    }
    const store: StoreChoice | undefined =
      flags.store === undefined
        ? undefined
        : flags.store === 'postgres'
          ? { kind: 'postgres', ...(flags['store-url'] === undefined ? {} : { url: flags['store-url'] }) }
          : { kind: 'lowdb' };
    const fdWarning = await fdLimitWarning(flags.services);
    if (fdWarning !== undefined) this.warn(fdWarning);
    const home = this.labHome(flags);
    const starting = closableRuntime(runtime);
    const stopOnSignal = onInterrupt(
      async () => {
        starting.close();
        await stopInterruptedUp(home, runtime);
      },
      (line) => this.logToStderr(`… ${line}`),
    );
    const result = await labUp({
      home,
      runtime: starting.runtime,
      posture,
      without,
      services: flags.services,
      ...(flags['identity-ttl'] === undefined ? {} : { identityTtlSeconds: flags['identity-ttl'] }),
      ...(flags['feed-max-age'] === undefined ? {} : { feedMaxAgeSeconds: flags['feed-max-age'] }),
      ...(partEnv === undefined ? {} : { partEnv }),
      ...(store === undefined ? {} : { store }),
      securityReplicas: flags['security-replicas'],
      ...(flags['key-dir'] === undefined ? {} : { auditKeyDir: flags['key-dir'] }),
      onProgress: (step) => this.logToStderr(`… ${step}`),
    }).finally(stopOnSignal);
    const { state } = result;
    this.log(
      renderTable(
        ['part', 'kind', 'address', state.runtime === 'process' ? 'pid' : 'container'],
        state.parts.map((p) => [
          p.name,
          p.kind,
          p.url,
          p.containerId?.slice(0, 12) ?? p.swarmServiceId?.slice(0, 12) ?? String(p.pid ?? '-'),
        ]),
      ),
    );
    this.log(
      `Lab ${state.labId} up in ${(result.durationMs / 1000).toFixed(1)} s, posture ${labelOf(state.posture, state.without)}.`,
    );
    this.log(`Defences: ${defenceList(state.defences).join(' ')}`);
    if (state.store?.kind === 'postgres') this.log(`Store: postgres ${state.store.where}`);
    this.log(
      `Gateway: ${state.gatewayUrl}   Next: trusted-ms user login <name>, trusted-ms call <service> <path>`,
    );
    // The one CA to check the gateway's HTTPS with (edge:tls): curl --cacert, any other client.
    if (state.caFile)
      this.log(`Lab CA: ${state.caFile}   e.g. curl --cacert ${state.caFile} ${state.gatewayUrl}/healthz`);
    return result;
  }
}
