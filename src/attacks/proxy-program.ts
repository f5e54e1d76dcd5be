import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { TrustedMsError } from '../errors.js';
import type { LabState, PartState } from '../kernel/lab-state.js';
import { waitHealthy } from '../lab/readiness.js';
import type { PartPlacement, Runtime } from '../lab/runtimes/runtime.js';
import { packageRoot } from '../paths.js';
import { emptyProxyStats, type ProxyOptions, type ProxyStats } from './proxy.js';
import type { ProxyProgramConfig, ProxyRecord } from './proxy-main.js';

/** What a scenario reads from a proxy on a link. */
export interface ProxyView {
  bytesUp(): Buffer;
  bytesDown(): Buffer;
  stats(): ProxyStats;
  /** Resolves once what the proxy recorded has stopped changing (it may live in another process). */
  settled?(): Promise<void>;
}

/** What the program is told; where it listens and what it reports to are the runtime's. */
export type ProgramProxyOptions = Pick<ProxyOptions, 'upstream' | 'tamper' | 'forged' | 'tls' | 'lifetimeMs'>;

/**
 * The proxy program (proxy-main.ts) started by the lab's runtime at `placement`: a local process,
 * or a container on the lab's network labelled as the lab's (so `lab down` removes it too). Its
 * record is a file in a folder of this host (mounted into the container), read on every look.
 */
export class ProgramProxy implements ProxyView {
  private constructor(
    private readonly runtime: Runtime,
    private readonly part: PartState,
    private readonly dir: string,
  ) {}

  static async start(
    lab: LabState,
    runtime: Runtime,
    placement: PartPlacement,
    name: string,
    opts: ProgramProxyOptions,
  ): Promise<ProgramProxy> {
    const dir = await mkdtemp(join(tmpdir(), 'tms-mitm-'));
    try {
      const configFile = join(dir, 'proxy.json');
      let tls: ProxyProgramConfig['tls'];
      if (opts.tls) {
        tls = { certFile: join(dir, 'cert.pem'), keyFile: join(dir, 'key.pem') };
        await writeFile(tls.certFile, opts.tls.certPem);
        await writeFile(tls.keyFile, opts.tls.keyPem, { mode: 0o600 });
      }
      const config: ProxyProgramConfig = {
        host: placement.listenHost,
        port: placement.port,
        upstream: opts.upstream,
        ...(opts.tamper ? { tamper: true } : {}),
        ...(opts.forged ? { forged: opts.forged } : {}),
        ...(tls ? { tls } : {}),
        lifetimeMs: opts.lifetimeMs ?? 60_000,
        recordFile: join(dir, 'record.json'),
      };
      await writeFile(configFile, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
      const part = await runtime.start({
        name,
        kind: 'attacker',
        entry: join(packageRoot(), 'dist', 'src', 'attacks', 'proxy-main.js'),
        configFile,
        logFile: join(dir, 'proxy.log'),
        port: placement.port,
        url: placement.url,
        mounts: [{ path: dir, writable: true }],
      });
      const proxy = new ProgramProxy(runtime, part, dir);
      // Listening is what its log says; its record file is written right after.
      await waitHealthy(runtime, { ...part, internal: true }, 15_000);
      for (let i = 0; i < 50 && proxy.read() === undefined; i++) await new Promise((r) => setTimeout(r, 100));
      if (proxy.read() === undefined) {
        await proxy.close();
        throw new TrustedMsError('LAB_START_FAILED', `the proxy ${name} did not start (lab ${lab.labId})`);
      }
      return proxy;
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }

  bytesUp(): Buffer {
    return Buffer.from(this.read()?.up ?? '', 'base64');
  }

  bytesDown(): Buffer {
    return Buffer.from(this.read()?.down ?? '', 'base64');
  }

  stats(): ProxyStats {
    return this.read()?.stats ?? emptyProxyStats();
  }

  /**
   * The proxy is another process: the caller's answer can arrive before the proxy has handled (and
   * recorded) the same connection's last events, e.g. a refused handshake. Waits until the record
   * reads the same 4 times in a row, 50 ms apart, or 3 s at most.
   */
  async settled(): Promise<void> {
    const until = Date.now() + 3000;
    let last = this.raw();
    let same = 0;
    while (same < 4 && Date.now() < until) {
      await sleep(50);
      const now = this.raw();
      same = now === last ? same + 1 : 0;
      last = now;
    }
  }

  /** Stops the program (a container is removed) and deletes its folder. Idempotent. */
  async close(): Promise<void> {
    await this.runtime.stop(this.part).catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true });
  }

  private read(): ProxyRecord | undefined {
    const text = this.raw();
    try {
      return text === undefined ? undefined : (JSON.parse(text) as ProxyRecord);
    } catch {
      return undefined;
    }
  }

  private raw(): string | undefined {
    try {
      return readFileSync(join(this.dir, 'record.json'), 'utf8');
    } catch {
      return undefined;
    }
  }
}
