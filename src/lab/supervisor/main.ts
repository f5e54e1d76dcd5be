import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { measuredByRuntime } from '../../defences/attestation.js';
import { isAttested } from '../../defences/attestation-table.js';
import {
  type LabState,
  type PartState,
  readLabState,
  requireLabState,
  writeLabState,
} from '../../kernel/lab-state.js';
import { readPartConfig } from '../../kernel/part-config.js';
import { readIdentity, writeIdentity } from '../../pki/identity-files.js';
import { clientTlsConnector } from '../../pki/mtls.js';
import { runningLabTime } from '../../store/lab-clock-mark.js';
import {
  renewUnmeasuredIdentity,
  type ServiceAttestation,
  verifyPartsForIdentity,
  verifyRestart,
  verifyServices,
} from '../attest.js';
import { restartingElsewhere } from '../restart-intent.js';
import { ProcessRuntime } from '../runtimes/process.js';
import type { PartLaunch } from '../runtimes/runtime.js';
import { RestartBackoff } from './backoff.js';
import { heldPort, portsOf } from './held-port.js';
import { provesIdentity } from './identity-check.js';
import { LabPostgresWatch } from './postgres-watch.js';
import { certificateTimes, type HeldIdentity, IdentityRenewal, RENEWAL_LOOK_MS } from './renewal.js';
import { readRestarts, writeRestarts } from './restarts.js';

/**
 * The lab's watchman, in every posture. On the process runtime it brings back a part that died
 * (the security service, the gateway, a service, the sink) and the lab's own PostgreSQL server
 * (postgres-watch.ts), as Docker's on-failure restart policy
 * does for containers: with a growing wait and at most five times in a row, recorded for
 * `lab status`. In trusted it also measures every service's code from outside on an interval and
 * reports to the security service, and a service it brings back is measured as it is now before
 * its program runs. With links:mtls it renews every part's identity at half-life (renewal.ts).
 */
const config = readPartConfig('supervisor');
const home = config.home;
const trusted = measuredByRuntime(config.defences.attestation);
const runtime = new ProcessRuntime();
const backoff = new RestartBackoff();
const postgres = new LabPostgresWatch(backoff, log);
const WATCH_MS = 250;
// links:mtls: the watchman's own identity, to tell a part from a process on its port by certificate.
// Renewed at half-life like the others, by this watchman, which then reads it again (below).
const identity =
  config.identityDir && config.caFile
    ? { own: await readIdentity(config.identityDir), caPem: readFileSync(config.caFile, 'utf8') }
    : undefined;

/** A part seen dead: which process died, and when it may be started again. */
const pending = new Map<string, { pid: number | undefined; due: number; impostor?: boolean }>();
let busy: Promise<void> | undefined;
let stopping = false;

function log(line: string): void {
  console.log(`${new Date().toISOString()} ${line}`);
}

function watch(): void {
  if (busy !== undefined || stopping) return;
  busy = round()
    .catch((err) => log(`watchman: round failed: ${(err as Error).message}`))
    .finally(() => {
      busy = undefined;
    });
}

async function round(): Promise<void> {
  const state = await readLabState(home).catch(() => undefined);
  // The lab was taken down (or replaced) without stopping the watchman: nothing is ours to restart.
  if (state?.labId !== config.labId) {
    void stop();
    return;
  }
  if (state.runtime !== 'process') return; // Docker's own restart policy brings containers back
  const record = await readRestarts(home);
  const before = JSON.stringify(record);
  for (const part of state.parts) {
    if (stopping) return;
    if (part.kind === 'supervisor' || part.kind === 'attacker' || record[part.name]?.gaveUp) continue;
    if (await runtime.isAlive(part)) {
      pending.delete(part.name);
      continue;
    }
    // Monotonic: on the wall clock, a step back between a death and its due time delayed the restart
    // by the step's length.
    const now = performance.now();
    const seen = pending.get(part.name);
    // Someone else started it again meanwhile (a restart by `attack simulate`): a new process to watch.
    if (seen !== undefined && seen.pid !== part.pid) pending.delete(part.name);
    if (seen === undefined || seen.pid !== part.pid) {
      // Died with an impostor on one of its ports (a start that failed on EADDRINUSE, say): not
      // counted towards giving up, and started again as soon as the ports are free (below).
      const held = await heldPort(ports(part));
      if (held !== undefined && (await whoListens(part)) === 'impostor') {
        backoff.forgive(part.name);
        pending.set(part.name, { pid: part.pid, due: now });
        reportImpostor(part, record, held);
        continue;
      }
      schedule(part, now, record, 'died');
      continue;
    }
    if (now < seen.due) continue;
    // Someone else is restarting it (the CLI's restartService): its new process is on the way.
    if (part.kind === 'service' && (await restartingElsewhere(home, part.name))) continue;
    // Something listens on one of its ports: someone else started it again (a restart by `attack
    // simulate`, say) and has not written the state file yet; look again next round. With mTLS
    // only if it proves to be the part: otherwise an impostor, reported and never taken for it (the
    // part is started again once the ports are free).
    const held = await heldPort(ports(part));
    if (held !== undefined) {
      if ((await whoListens(part)) === 'impostor') reportImpostor(part, record, held);
      continue;
    }
    await respawn(state, part, record);
  }
  if (!stopping) await watchPostgres(state, record);
  if (JSON.stringify(record) !== before) await writeRestarts(home, record);
}

/** The lab's own PostgreSQL server brought back; the state file names its new PID (`lab down` stops it by its cluster). */
async function watchPostgres(
  state: LabState,
  record: Awaited<ReturnType<typeof readRestarts>>,
): Promise<void> {
  const pid = await postgres.round(state.store, record, performance.now());
  if (pid === undefined) return;
  const onDisk = await readLabState(home);
  if (onDisk?.labId !== config.labId || onDisk.store?.kind !== 'postgres' || !onDisk.store.server) return;
  await writeLabState(home, {
    ...onDisk,
    store: { ...onDisk.store, server: { ...onDisk.store.server, pid } },
  });
}

function ports(part: PartState): number[] {
  return portsOf(part, controlPlaneUrlOf(part));
}

/**
 * A security service replica's own control-plane listener (issue 17): the port in its config, on
 * the lab's control-plane host; the first replica's is the lab's.
 */
function controlPlaneUrlOf(part: PartState): string | undefined {
  const lab = config.controlPlaneUrl;
  if (part.kind !== 'security' || lab === undefined || part.name === 'security') return lab;
  try {
    const { controlPort } = JSON.parse(readFileSync(part.configFile, 'utf8')) as { controlPort?: unknown };
    if (typeof controlPort !== 'number') return lab;
    const url = new URL(lab);
    url.port = String(controlPort);
    return url.origin;
  } catch {
    return lab;
  }
}

/**
 * Whether what listens on a dead part's port proves to be that part: the security service on its
 * control-plane listener, a service on its own (https); `unknown` where there is no identity to ask
 * for (plain links, the gateway's plain edge, the sink).
 */
async function whoListens(part: PartState): Promise<'proven' | 'impostor' | 'unknown'> {
  if (identity === undefined) return 'unknown';
  const control = controlPlaneUrlOf(part);
  const check =
    part.kind === 'security' && control
      ? { url: control, name: 'security', kind: 'security' as const }
      : part.kind === 'service' && part.url.startsWith('https:')
        ? { url: part.url, name: part.name, kind: 'service' as const }
        : undefined;
  if (check === undefined) return 'unknown';
  const tls = clientTlsConnector(identity.own, identity.caPem, check.name, check.kind);
  return (await provesIdentity(check.url, tls)) ? 'proven' : 'impostor';
}

function reportImpostor(
  part: PartState,
  record: Awaited<ReturnType<typeof readRestarts>>,
  port: number,
): void {
  const seen = record[part.name]?.foreignListener;
  // Once per port until it is gone: a record written every 250 ms would be noise, and a write.
  if (seen?.port === port && pending.get(part.name)?.impostor === true) return;
  record[part.name] = {
    ...(record[part.name] ?? { restarts: 0 }),
    foreignListener: { port, seenAt: new Date().toISOString() },
  };
  const p = pending.get(part.name);
  if (p) p.impostor = true;
  log(
    `watchman: ${part.name} is dead and something else listens on its port ${port}: it did not prove to be ${part.name} (no TLS handshake with its identity); not taken for it`,
  );
}

function schedule(
  part: PartState,
  now: number,
  record: Awaited<ReturnType<typeof readRestarts>>,
  what: string,
): void {
  const delay = backoff.delayAfterDeath(part.name, now);
  if (delay === undefined) {
    record[part.name] = { ...(record[part.name] ?? { restarts: 0 }), gaveUp: true };
    pending.delete(part.name);
    log(`watchman: ${part.name} ${what} (pid ${part.pid}); gave up after too many restarts in a row`);
    return;
  }
  pending.set(part.name, { pid: part.pid, due: now + delay });
  log(`watchman: ${part.name} ${what} (pid ${part.pid}); restarting in ${delay} ms`);
}

async function respawn(
  state: LabState,
  part: PartState,
  record: Awaited<ReturnType<typeof readRestarts>>,
): Promise<void> {
  const entry =
    part.entry ?? (part.kind === 'service' && part.appDir ? join(part.appDir, 'service.mjs') : undefined);
  if (entry === undefined) {
    record[part.name] = { ...(record[part.name] ?? { restarts: 0 }), gaveUp: true };
    log(`watchman: ${part.name} cannot be restarted: its program is not recorded`);
    return;
  }
  const launch: PartLaunch = {
    name: part.name,
    kind: part.kind,
    entry,
    configFile: part.configFile,
    logFile: part.logFile,
    port: part.port,
    url: part.url,
    ...(part.appDir ? { appDir: part.appDir } : {}),
    ...(part.env ? { env: part.env } : {}),
  };
  // trusted: the code it will run is measured before it runs; a service whose code changed is
  // marked untrusted (the gateway stops routing to it) and started all the same, as by `lab up`.
  const measure = (when: string) =>
    trusted && part.kind === 'service'
      ? async (next: PartState): Promise<void> => {
          const measured = await verifyRestart(home, state, next, part, runtime);
          log(`watchman: ${part.name} measured ${when}: ${verdict(measured)}`);
        }
      : undefined;
  // And once it runs: the process read back from the kernel against the launch it was handed.
  const hooks = { beforeRun: measure('before restart'), afterRun: measure('as it runs') };
  backoff.started(part.name, performance.now());
  let started: PartState;
  try {
    started = await runtime.start(launch, trusted && part.kind === 'service' ? hooks : {});
  } catch (err) {
    log(`watchman: ${part.name} could not be restarted: ${(err as Error).message}`);
    schedule(part, performance.now(), record, 'failed to restart');
    return;
  }
  // A CLI restart marked while this start ran (a revert after a killed `attack simulate`) owns the
  // service: keeping this process would take its port (its start dies on EADDRINUSE) and leave one
  // the state never names serving (the kill test under load). Yield to it.
  if (part.kind === 'service' && (await restartingElsewhere(home, part.name))) {
    log(`watchman: ${part.name} is being restarted by another process; stopping the one just started`);
    await runtime.stop(started).catch(() => undefined);
    pending.delete(part.name);
    return;
  }
  // The lab's state file names the new process, so that `lab down` stops it and `lab status` sees it.
  const onDisk = await readLabState(home);
  if (onDisk?.labId === config.labId) {
    await writeLabState(home, {
      ...onDisk,
      // A code copy and a manifest are the new process's own or none (a program from outside the
      // folder; a posture that does not attest launches).
      parts: onDisk.parts.map((p) => {
        if (p.name !== part.name) return p;
        const { codeCopy: _, manifest: __, ...before } = p;
        return { ...before, ...started };
      }),
    });
  }
  pending.delete(part.name);
  const previous = record[part.name]?.restarts ?? 0;
  record[part.name] = { restarts: previous + 1, lastRestartAt: new Date().toISOString() };
  log(`watchman: ${part.name} restarted (pid ${started.pid}, restart ${previous + 1})`);
}

/** A service's name with what differs, when its verdict says (`customers (env.NODE_OPTIONS)`). */
function named(s: ServiceAttestation): string {
  return s.differs ? `${s.name} (${s.differs.join(', ')})` : s.name;
}

function verdict(s: ServiceAttestation | undefined): string {
  if (s === undefined) return 'unknown';
  return s.differs ? `${s.state}, differs: ${s.differs.join(', ')}` : s.state;
}

let attesting = false;
async function attestRound(): Promise<void> {
  if (attesting) return;
  attesting = true;
  try {
    const { services, durationMs } = await verifyServices(home, 'all');
    const bad = services.filter((s) => !isAttested(s.state) && !s.deferred && !s.late).map(named);
    const later = services.filter((s) => s.deferred).map((s) => s.name);
    const replaced = services.filter((s) => s.late).map((s) => s.name);
    log(
      `attested ${services.length - later.length - replaced.length} services in ${durationMs.toFixed(0)} ms${bad.length ? `; untrusted: ${bad.join(', ')}` : ''}${later.length ? `; not measurable right now: ${later.join(', ')}` : ''}${replaced.length ? `; restarted while measured (dropped): ${replaced.join(', ')}` : ''}`,
    );
  } catch (err) {
    log(`attestation round failed: ${(err as Error).message}`);
  } finally {
    attesting = false;
  }
}

// links:mtls: every identity renewed at half-life, a service's only with a trusted measurement.
const renewal =
  config.defences.links === 'mtls'
    ? new IdentityRenewal({
        held: async () => heldIdentities(await readLabState(home).catch(() => undefined)),
        now: runningLabTime(home, config.labId),
        current: certificateTimes,
        renewServices: async (names) => {
          const state = await requireLabState(home);
          const parts = state.parts.filter((p) => p.kind === 'service' && names.includes(p.name));
          const { services, identities } = await verifyPartsForIdentity(home, state, parts);
          return {
            identities,
            states: Object.fromEntries(
              services.map((s) => [s.name, s.deferred ? `not measurable: ${s.deferred}` : s.state]),
            ),
          };
        },
        renewUnmeasured: async (kind) => renewUnmeasuredIdentity(home, await requireLabState(home), kind),
        write: async (dir, issued) => {
          await writeIdentity(dir, issued);
          // its own: whoListens presents the renewed one from now on
          if (identity && dir === config.identityDir) identity.own = await readIdentity(dir);
        },
      })
    : undefined;
let renewing: Promise<void> | undefined;
function renewRound(): void {
  if (renewal === undefined || renewing !== undefined || stopping) return;
  renewing = renewal
    .round()
    .then((outcomes) => {
      for (const o of outcomes) {
        log(
          o.outcome === 'renewed'
            ? `identity: ${o.part} renewed (serial ${o.serial}, valid until ${o.notAfter})`
            : `identity: ${o.part} not renewed: ${o.outcome === 'refused' ? 'refused' : 'failed'} (${o.reason})`,
        );
      }
    })
    .catch((err) => log(`identity renewal round failed: ${(err as Error).message}`))
    .finally(() => {
      renewing = undefined;
    });
}

/** The parts of this lab that hold an identity, and where (their config's identityDir). */
async function heldIdentities(state: LabState | undefined): Promise<HeldIdentity[]> {
  if (state?.labId !== config.labId) return [];
  const held: HeldIdentity[] = [];
  for (const part of state.parts) {
    if (part.kind !== 'service' && part.kind !== 'gateway' && part.kind !== 'supervisor') continue;
    const partConfig = await readFile(part.configFile, 'utf8')
      .then((text) => JSON.parse(text) as { identityDir?: unknown })
      .catch(() => undefined);
    if (typeof partConfig?.identityDir === 'string') {
      held.push({ part: part.name, kind: part.kind, dir: partConfig.identityDir });
    }
  }
  return held;
}

const watcher = setInterval(watch, WATCH_MS);
const attester = trusted ? setInterval(() => void attestRound(), config.intervalSeconds * 1000) : undefined;
const renewer = renewal ? setInterval(renewRound, RENEWAL_LOOK_MS) : undefined;
log(
  `watchman: restarting dead parts${trusted ? `, re-attesting every ${config.intervalSeconds} s` : ''}${renewal ? ', renewing identities at half-life' : ''}`,
);

/** A restart under way finishes (and is written to the state file) before the watchman exits. */
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  clearInterval(watcher);
  if (attester) clearInterval(attester);
  if (renewer) clearInterval(renewer);
  await busy;
  await renewing;
  process.exit(0);
}
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
