import { createHash } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { open, readdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { type LaunchManifest, launchHash } from '../../attestation/launch-manifest.js';
import { hashDirectory } from '../../attestation/tree-hash.js';
import { TrustedMsError } from '../../errors.js';
import type { PartState } from '../../kernel/lab-state.js';
import { freePorts } from '../ports.js';
import { codeCopiesDir, copyMeasured, entryInCopy, hashOfCopy } from './code-copy.js';
import { attestsLaunch, launchEnvironment, launchManifest, serviceManifest } from './launch.js';
import type { PartLaunch, PartPlacement, PartPlan, Runtime, StartHooks } from './runtime.js';

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
    // A service runs from a read-only copy of its code folder made from the bytes that were
    // hashed, never from the folder itself: what `beforeRun` measures is what runs (issue 14).
    // An entry outside the folder (a rogue program of an attack scenario) runs as given.
    let entry = launch.entry;
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
        entry = inCopy;
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
        : await launchManifest({ argv: [entry], env, configFile: launch.configFile });
    }
    const started = {
      ...partOf(launch),
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
    try {
      const child = execa(process.execPath, [entry], {
        detached: true,
        cleanup: false,
        stdin: 'ignore',
        stdout: log,
        stderr: log,
        env,
        extendEnv: false,
      });
      // Not awaited: the part outlives this process. Its exit is seen by health checks and `lab status`.
      child.catch(() => undefined);
      child.unref();
      if (child.pid === undefined)
        throw new TrustedMsError('LAB_START_FAILED', `${launch.name} did not start`);
      return { ...started, pid: child.pid };
    } finally {
      closeSync(log);
    }
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
   * service not started yet (`lab up`, `service register`), the one its own start would have.
   */
  async measure(
    part: Pick<PartState, 'name' | 'appDir' | 'codeCopy' | 'env' | 'manifest'> & { configFile?: string },
  ): Promise<string> {
    if (!part.appDir) throw new TrustedMsError('INVALID_INPUT', `${part.name} has no code folder to measure`);
    const code = await this.measureCode(part.appDir, part.codeCopy);
    if (part.configFile === undefined || !(await attestsLaunch(part.configFile))) return code.hash;
    const manifest =
      part.manifest ??
      (await serviceManifest(
        { configFile: part.configFile, ...(part.env ? { env: part.env } : {}) },
        code.deployed,
      ));
    return launchHash(code.hash, manifest);
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
