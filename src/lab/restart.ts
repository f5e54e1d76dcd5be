import { readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Agent } from 'undici';
import { measuredByRuntime } from '../defences/attestation.js';
import { TrustedMsError } from '../errors.js';
import { type LabState, labDir, type PartState, readLabState, writeLabState } from '../kernel/lab-state.js';
import type { ServicePartConfig } from '../kernel/part-config.js';
import { readIdentity } from '../pki/identity-files.js';
import { clientTlsConnector } from '../pki/mtls.js';
import { registerParts, verifyRestart } from './attest.js';
import { serviceMounts } from './plan.js';
import { waitHealthy, waitReady } from './readiness.js';
import { markRestarting } from './restart-intent.js';
import type { Runtime } from './runtimes/runtime.js';
import { runtimeFor } from './runtimes/select.js';

export interface RestartOptions {
  /**
   * run this program instead of the service's own `service.mjs` (its code folder stays as it is):
   * the scenarios' stand-in for a running service taken over through a bug, which changes nothing
   * of its launch (PartLaunch.simulatesCompromise)
   */
  entry?: string;
  /**
   * start with this config, written over the part's config file (the file's path stays the same):
   * the operator's own reconfiguration, so in `attestation:measured` the launch it makes is
   * registered before the start (the MITM scenarios' stand-in for a position on the wire)
   */
  config?: ServicePartConfig;
  /**
   * the operator's pass-through for this start, in place of the one the service had (`lab up
   * --part-env`): not registered, so a variable that changes the launch makes the service untrusted
   * in `attestation:measured` until someone registers it
   */
  env?: Record<string, string>;
  runtime?: Runtime;
  healthTimeoutMs?: number;
  /** wait for the program's "listening" log line instead of its /healthz (a program that is not the kit) */
  waitForLog?: boolean;
}

export interface RestartResult {
  part: PartState;
  /** trusted: what the measurement made before the start concluded */
  attestation?: string;
}

/**
 * Stops one service of a running lab and starts it again the way `lab up` starts one: in the
 * trusted posture its code folder is first measured from outside and reported, so a service whose
 * code changed is marked untrusted (the gateway is told at once) before it serves anyone. It is
 * started all the same: the defence is that nobody talks to it. Updates the lab's state file and
 * the `lab` object passed in (pid, url).
 */
export async function restartService(
  lab: LabState,
  name: string,
  opts: RestartOptions = {},
): Promise<RestartResult> {
  // One restart of a service at a time in this process: a revert run on Ctrl-C while a scenario's
  // restart is in flight waits for it and then stops the process it started, rather than racing it
  // (the loser of the port would leave the state naming a program that is not the folder's).
  const key = `${lab.labId}/${name}`;
  const mine = (restarting.get(key) ?? Promise.resolve())
    .catch(() => undefined)
    .then(() => restartOnce(lab, name, opts));
  restarting.set(key, mine);
  try {
    return await mine;
  } finally {
    if (restarting.get(key) === mine) restarting.delete(key);
  }
}

const restarting = new Map<string, Promise<RestartResult>>();

async function restartOnce(lab: LabState, name: string, opts: RestartOptions): Promise<RestartResult> {
  const index = lab.parts.findIndex((p) => p.kind === 'service' && p.name === name);
  const given = lab.parts[index];
  if (given === undefined)
    throw new TrustedMsError('SERVICE_NOT_FOUND', `no service named ${name} in this lab`);
  const home = homeOfLab(lab);
  // The process running now, as the state file names it (a restart since `lab` was read, by this
  // process or the watchman, is in the file, not in the object passed in).
  const now = await readLabState(home).catch(() => undefined);
  const old =
    (now?.labId === lab.labId ? now.parts.find((p) => p.kind === 'service' && p.name === name) : undefined) ??
    given;
  if (!old.appDir) throw new TrustedMsError('INVALID_INPUT', `${name} has no code folder`);
  const runtime = opts.runtime ?? (await runtimeFor(lab.runtime, { labId: lab.labId, posture: lab.posture }));
  // The watchman leaves a service alone while this restart runs (src/lab/restart-intent.ts).
  const done = await markRestarting(home, name);
  try {
    return await restartStopped(lab, name, opts, { index, home, old, now, runtime });
  } finally {
    await done();
  }
}

async function restartStopped(
  lab: LabState,
  name: string,
  opts: RestartOptions,
  at: { index: number; home: string; old: PartState; now: LabState | undefined; runtime: Runtime },
): Promise<RestartResult> {
  const { index, home, old, now, runtime } = at;
  if (!old.appDir) throw new TrustedMsError('INVALID_INPUT', `${name} has no code folder`);
  await runtime.stop(old);
  if (opts.config !== undefined) {
    await writeFile(old.configFile, `${JSON.stringify(opts.config, null, 2)}\n`, { mode: 0o600 });
  }
  const config = JSON.parse(await readFile(old.configFile, 'utf8')) as ServicePartConfig;
  const env = opts.env ?? old.env;
  if (
    opts.config !== undefined &&
    runtime.kind === 'process' &&
    measuredByRuntime(lab.defences.attestation)
  ) {
    // A config of the operator's: the launch it makes (with the pass-through of this start) is the
    // known-good one from now on. (A container's config is not part of what is measured on Docker,
    // so nothing to register there.)
    const { env: _, ...rest } = old;
    await registerParts(home, now ?? lab, [{ ...rest, ...(env ? { env } : {}) }], runtime);
  }

  let attestation: string | undefined;
  // trusted: the code as it will run (in a container: read from the container) is measured before
  // the program starts.
  const beforeRun = async (next: PartState): Promise<void> => {
    if (!measuredByRuntime(lab.defences.attestation)) return;
    const state = (await readLabState(home)) ?? lab;
    attestation = (await verifyRestart(home, state, next, old, runtime))?.state;
  };

  const entry = opts.entry ?? join(old.appDir, 'service.mjs');
  const logStart = await stat(old.logFile).then(
    (st) => st.size,
    () => 0,
  );
  const part = await runtime.start(
    {
      name,
      kind: 'service',
      entry,
      configFile: old.configFile,
      logFile: old.logFile,
      port: old.port,
      url: old.url,
      appDir: old.appDir,
      ...(env && Object.keys(env).length > 0 ? { env } : {}),
      ...(opts.entry ? { simulatesCompromise: true } : {}),
      mounts: [
        { path: old.configFile },
        ...(opts.entry ? [{ path: dirname(opts.entry) }] : []),
        ...serviceMounts(config),
      ],
    },
    // And once it runs, measured again as it runs (read back from the kernel): the last word on
    // this start is then this process's, after any report a watchman's round made of the one it
    // replaces (the busy matrix had the gateway serve a launch found untrusted before its start).
    { beforeRun, afterRun: beforeRun },
  );
  lab.parts[index] = part;
  const onDisk = await readLabState(home);
  if (onDisk?.labId === lab.labId) {
    await writeLabState(home, {
      ...onDisk,
      parts: onDisk.parts.map((p) => (p.kind === 'service' && p.name === name ? part : p)),
    });
  }

  const timeout = opts.healthTimeoutMs ?? 20_000;
  // A part with nothing published (a service container) is waited for by its log in any case.
  if (opts.waitForLog === true && part.internal !== true) {
    await waitReady(runtime, part, { kind: 'log-line', since: logStart }, timeout);
  } else {
    // Health through the gateway's own identity with mTLS: the service accepts lab-CA clients only.
    let dispatcher: Agent | undefined;
    if (config.caFile) {
      const gateway = await readIdentity(join(labDir(home), 'gateway', 'identity'));
      dispatcher = new Agent({
        connect: clientTlsConnector(gateway, await readFile(config.caFile, 'utf8'), name),
      });
    }
    await waitHealthy(runtime, part, timeout, dispatcher);
  }
  return { part, ...(attestation === undefined ? {} : { attestation }) };
}

/** A lab's home folder, from where `lab up` wrote its parts' configs (`<home>/lab/parts/*.json`). */
export function homeOfLab(lab: LabState): string {
  const first = lab.parts[0];
  if (first === undefined) throw new TrustedMsError('LAB_NOT_RUNNING', `lab ${lab.labId} has no parts`);
  return dirname(dirname(dirname(first.configFile)));
}
