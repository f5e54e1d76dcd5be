import { createHash, randomUUID } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { open, readdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Writable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { type LaunchManifest, launchHash, manifestDifferences } from '../../attestation/launch-manifest.js';
import { hashDirectory } from '../../attestation/tree-hash.js';
import { isTrustedMsError, TrustedMsError } from '../../errors.js';
import type { PartState } from '../../kernel/lab-state.js';
import { freePorts } from '../ports.js';
import { codeCopiesDir, copyMeasured, entryInCopy, hashOfCopy } from './code-copy.js';
import { attestsLaunch, launchEnvironment, launchManifest, serviceManifest } from './launch.js';
import { measuredPayload, measuredStartArgv } from './measured-start.js';
import { READS_BACK, readRunning, runningDifferences } from './read-back.js';
import type { MeasuredPart, PartLaunch, PartPlacement, PartPlan, Runtime, StartHooks } from './runtime.js';

const HOST = '127.0.0.1';

/** The lab's parts as local processes on 127.0.0.1 (execa), detached so they outlive `lab up`. */
export class ProcessRuntime implements Runtime {
  readonly kind = 'process' as const;

  async prepare(): Promise<void> {}

  /** Every part on its own free port of 127.0.0.1, reached there by the parts and the CLI alike. */
  async place(parts: PartPlan[]): Promise<Map<string, PartPlacement>> {
    const listening = parts.filter((p) => p.kind !== 'supervisor');
    const controls = listening.filter((p) => p.controlPlane === true).length;
    const ports = await freePorts(listening.length + controls);
    const placed = new Map<string, PartPlacement>();
    let next = listening.length;
    listening.forEach((p, i) => {
      const port = ports[i] as number;
      const url = `${p.scheme}://${HOST}:${port}`;
      const controlPort = p.controlPlane === true ? (ports[next++] as number) : undefined;
      const controlUrl = `https://${HOST}:${controlPort}`;
      placed.set(p.name, {
        listenHost: HOST,
        port,
        url,
        hostUrl: url,
        ...(p.appDir ? { appDir: p.appDir } : {}),
        ...(controlPort === undefined
          ? {}
          : { control: { port: controlPort, url: controlUrl, hostUrl: controlUrl } }),
      });
    });
    return placed;
  }

  /** Processes leave nothing behind but themselves. */
  async teardown(): Promise<string[]> {
    return [];
  }

  async start(launch: PartLaunch, hooks: StartHooks = {}): Promise<PartState> {
    // A service runs the bytes that were read once from its code folder and hashed, handed to Node
    // through its standard input (measured-start.ts); the read-only copy made from the same bytes
    // is what a re-measure compares and what a self-report (paper) hashes. Nothing on disk is read
    // by Node after the measurement (issue 14). An entry outside the folder (a rogue program of an
    // attack scenario) runs as given.
    let argv = [launch.entry];
    let payload: Buffer | undefined;
    let codeCopy: string | undefined;
    let codeHash: string | undefined;
    if (launch.kind === 'service' && launch.appDir) {
      const copy = await copyMeasured(
        launch.appDir,
        // <lab>/parts/<part>.json: the lab's folder is two levels up.
        codeCopiesDir(dirname(dirname(launch.configFile))),
      );
      codeHash = copy.hash;
      const inCopy = entryInCopy(launch.appDir, launch.entry, copy.dir);
      if (inCopy !== undefined) {
        argv = measuredStartArgv(copy.dir, inCopy, copy.hash);
        payload = measuredPayload(copy.entries);
        codeCopy = copy.dir;
      }
    }
    const env = launchEnvironment(launch, codeCopy);
    // The manifest is made from the very argv and environment handed to execa below, and kept in
    // the part's state: a re-measure hashes what was started, not what the files say now.
    let manifest: LaunchManifest | undefined;
    if (codeHash !== undefined && (await attestsLaunch(launch.configFile))) {
      manifest = launch.simulatesCompromise
        ? await serviceManifest(launch, codeHash)
        : await launchManifest({ argv, env, configFile: launch.configFile });
    }
    const started = {
      ...partOf(launch),
      // Named before the process exists: the measurement before it runs reports this start.
      launch: randomUUID(),
      ...(codeCopy ? { codeCopy } : {}),
      ...(manifest ? { manifest } : {}),
    };
    await hooks.beforeRun?.(started);
    // The log file's descriptor goes to the child itself, so nothing flows through this process
    // and `lab up` can exit while the part runs on.
    // (execa's types take only literal descriptor numbers; at run time any descriptor is passed on.)
    // Loaded here: execa costs ~0.15 s of the start of every command that only reads lab state.
    const { execa } = await import('execa');
    const log = openSync(launch.logFile, 'a', 0o600) as 1;
    let pid: number | undefined;
    try {
      const child = execa(process.execPath, argv, {
        detached: true,
        cleanup: false,
        stdin: payload ? 'pipe' : 'ignore',
        stdout: log,
        stderr: log,
        env,
        extendEnv: false,
      });
      // Not awaited: the part outlives this process. Its exit is seen by health checks and `lab status`.
      child.catch(() => undefined);
      child.unref();
      pid = child.pid;
      if (pid === undefined) throw new TrustedMsError('LAB_START_FAILED', `${launch.name} did not start`);
      if (payload && child.stdin) await handOver(child.stdin, payload);
    } finally {
      closeSync(log);
    }
    const running = { ...started, pid };
    await hooks.afterRun?.(running);
    return running;
  }

  async stop(part: PartState): Promise<void> {
    if (part.pid === undefined || !(await this.isAlive(part))) return;
    signal(part.pid, 'SIGTERM');
    for (let i = 0; i < 40; i++) {
      if (!(await this.isAlive(part))) return;
      await sleep(50);
    }
    signal(part.pid, 'SIGKILL');
    for (let i = 0; i < 40 && (await this.isAlive(part)); i++) await sleep(25);
  }

  /** Alive and still ours: a recycled PID running something else must never be signalled. */
  async isAlive(part: PartState): Promise<boolean> {
    if (part.pid === undefined) return false;
    try {
      process.kill(part.pid, 0);
    } catch {
      return false;
    }
    try {
      const stat = await readFile(`/proc/${part.pid}/stat`, 'utf8');
      if (/\) Z /.test(stat)) return false;
      const environ = await readFile(`/proc/${part.pid}/environ`, 'utf8');
      return environ.split('\0').includes(`TMS_PART_CONFIG=${part.configFile}`);
    } catch {
      return process.platform !== 'linux';
    }
  }

  /**
   * The code folder's tree hash; for a service running from a code copy, that hash only when the
   * copy is still what its name says and the folder still holds the same code. Otherwise a hash of
   * the three together, which matches no registration: a copy changed after its start, or a folder
   * that differs from what runs (changed, or put back after a swap), is untrusted until a restart
   * makes a new copy. In `attestation:measured` the answer is that code hash bound to the launch
   * manifest (launchHash): the one the runtime recorded when it started the process, or, for a
   * service not started yet (`lab up`, `service register`), the one its own start would have. A
   * service running from its copy is read back from the kernel too (Linux): a process whose
   * executable, command line or environment is not the recorded manifest's gives a hash that
   * matches no registration.
   */
  async measure(part: MeasuredPart): Promise<string> {
    if (!part.appDir) throw new TrustedMsError('INVALID_INPUT', `${part.name} has no code folder to measure`);
    const code = await this.measureCode(part.appDir, part.codeCopy);
    if (part.configFile === undefined || !(await attestsLaunch(part.configFile))) return code.hash;
    const manifest =
      part.manifest ??
      (await serviceManifest(
        { configFile: part.configFile, ...(part.env ? { env: part.env } : {}) },
        code.deployed,
      ));
    const hash = launchHash(code.hash, manifest);
    const differs = await this.readBack(part);
    if (differs.length === 0) return hash;
    return `sha256:${createHash('sha256')
      .update(`read back differs\n${hash}\n${differs.join('\n')}\n`)
      .digest('hex')}`;
  }

  /**
   * The fields in which the running process differs from its recorded manifest. Only a service
   * started from its code copy (by this runtime, with a manifest) is read back: a process started
   * from a program outside the folder is the scenarios' stand-in for a service taken over through a
   * bug, whose launch is recorded as its own start would be (PartLaunch.simulatesCompromise).
   */
  private async readBack(part: MeasuredPart): Promise<string[]> {
    if (part.manifest === undefined || part.codeCopy === undefined || part.pid === undefined) return [];
    const running = await readRunning(part.pid);
    if (running === undefined && READS_BACK) {
      // The process this record names is gone: a restart is under way and the state file does not
      // name the new one yet. Measured from the old record, it said "trusted" for a launch nobody
      // runs, over the restart's own "untrusted" (the busy matrix: attestation.env-injection served
      // in trusted once, the watchman's round reporting the dead process after the CLI had reported
      // the new one). No verdict: the next round measures what runs.
      throw new TrustedMsError(
        'MEASUREMENT_DEFERRED',
        `${part.name}: pid ${part.pid} is gone (being restarted); not measured`,
      );
    }
    return running === undefined ? [] : runningDifferences(part.manifest, running);
  }

  /**
   * Why a service measures untrusted, as field names (Runtime.explain): what the read-back found;
   * `code` when the folder or the copy is not the code that runs, or the folder's code is not the
   * registered code; and the fields in which the recorded launch differs from the registered start
   * of the code that runs. The registration holds a hash only, so the registered start is found
   * among the service's own starts (with and without its pass-through) by hashing each with the
   * folder's code.
   */
  async explain(part: MeasuredPart, expectedHash: string | undefined): Promise<string[]> {
    if (!part.appDir) return ['code'];
    const code = await this.measureCode(part.appDir, part.codeCopy);
    // Gone since it was measured: what the read-back would have said is not known.
    const fields = await this.readBack(part).catch((err: unknown) => {
      if (isTrustedMsError(err, 'MEASUREMENT_DEFERRED')) return ['readback.gone'];
      throw err;
    });
    if (code.hash !== code.deployed) fields.push('code');
    const configFile = part.configFile;
    if (configFile !== undefined && (await attestsLaunch(configFile))) {
      const own = (codeHash: string, env: Record<string, string> | undefined) =>
        serviceManifest({ configFile, ...(env ? { env } : {}) }, codeHash);
      const passThroughs = part.env ? [part.env, undefined] : [undefined];
      let registered: { env: Record<string, string> | undefined } | undefined;
      for (const env of passThroughs) {
        if (launchHash(code.deployed, await own(code.deployed, env)) === expectedHash) {
          registered = { env };
          break;
        }
      }
      if (registered === undefined) fields.push('code');
      const running = part.codeCopy ? hashOfCopy(part.codeCopy) : code.deployed;
      const recorded = part.manifest ?? (await own(code.deployed, part.env));
      const expected = await own(running, registered === undefined ? part.env : registered.env);
      fields.push(...manifestDifferences(expected, recorded));
    }
    return fields.length > 0 ? [...new Set(fields)] : ['code'];
  }

  private async measureCode(
    appDir: string,
    codeCopy: string | undefined,
  ): Promise<{ hash: string; deployed: string }> {
    const deployed = (await hashDirectory(appDir)).hash;
    if (codeCopy === undefined) return { hash: deployed, deployed };
    const named = hashOfCopy(codeCopy);
    const running = await hashDirectory(codeCopy).then(
      (t) => t.hash,
      () => 'missing',
    );
    if (running === named && deployed === named) return { hash: named, deployed };
    const differs = `sha256:${createHash('sha256').update(`differs\n${named}\n${running}\n${deployed}\n`).digest('hex')}`;
    return { hash: differs, deployed };
  }

  async logTail(part: PartState, lines: number): Promise<string> {
    const text = await readFile(part.logFile, 'utf8').catch(() => '');
    return text.split('\n').filter(Boolean).slice(-lines).join('\n');
  }

  /** The last lines of a part's log file, then what is appended to it, until the signal aborts. */
  async followLog(
    part: PartState,
    lines: number,
    write: (chunk: string) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    const file = await open(part.logFile, 'r');
    try {
      let offset = (await file.stat()).size;
      const tail = await this.logTail(part, lines);
      if (tail !== '') write(`${tail}\n`);
      while (signal?.aborted !== true) {
        await delay(250, undefined, { signal }).catch(() => undefined);
        const size = (await file.stat()).size;
        if (size > offset) {
          const buf = Buffer.alloc(size - offset);
          await file.read(buf, 0, buf.length, offset);
          write(buf.toString('utf8'));
          offset = size;
        }
      }
    } finally {
      await file.close();
    }
  }
}

/**
 * Every process on this host started as a part of the lab whose part configs are in `partsDir`
 * (found by the `TMS_PART_CONFIG` in its environment), whether or not the state file names it: a
 * part the watchman started just as the lab was taken down. Linux only (empty elsewhere).
 */
export async function processesOfLab(partsDir: string): Promise<number[]> {
  const prefix = `TMS_PART_CONFIG=${partsDir.endsWith('/') ? partsDir : `${partsDir}/`}`;
  const pids = (await readdir('/proc').catch(() => [] as string[])).filter((d) => /^\d+$/.test(d));
  const found: number[] = [];
  await Promise.all(
    pids.map(async (pid) => {
      const environ = await readFile(`/proc/${pid}/environ`, 'utf8').catch(() => '');
      if (!environ.split('\0').some((v) => v.startsWith(prefix))) return;
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
      if (stat !== '' && !/\) Z /.test(stat)) found.push(Number(pid));
    }),
  );
  return found;
}

function partOf(launch: PartLaunch): PartState {
  return {
    name: launch.name,
    kind: launch.kind,
    port: launch.port,
    url: launch.url,
    configFile: launch.configFile,
    logFile: launch.logFile,
    entry: launch.entry,
    ...(launch.appDir ? { appDir: launch.appDir } : {}),
    ...(launch.env && Object.keys(launch.env).length > 0 ? { env: launch.env } : {}),
  };
}

/**
 * Writes the measured bytes to the child's standard input and closes it. Resolved once the kernel
 * has them all, so that `lab up` may exit; a child that dies before reading them (its log says
 * why) is the watchman's to see, not an error of the start.
 */
function handOver(stdin: Writable, payload: Buffer): Promise<void> {
  return new Promise((resolve) => {
    stdin.once('error', () => resolve());
    stdin.end(payload, () => resolve());
  });
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
