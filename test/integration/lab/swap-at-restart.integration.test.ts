import { access, appendFile, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LaunchManifest, launchHash } from '../../../src/attestation/launch-manifest.js';
import { hashDirectory } from '../../../src/attestation/tree-hash.js';
import { callService } from '../../../src/client/call.js';
import type { PartState } from '../../../src/kernel/lab-state.js';
import { registerServices, verifyServices } from '../../../src/lab/attest.js';
import { labDown } from '../../../src/lab/down.js';
import { restartService } from '../../../src/lab/restart.js';
import { hashOfCopy } from '../../../src/lab/runtimes/code-copy.js';
import { serviceManifest } from '../../../src/lab/runtimes/launch.js';
import { measuredStartArgv } from '../../../src/lab/runtimes/measured-start.js';
import { ProcessRuntime } from '../../../src/lab/runtimes/process.js';
import type { PartLaunch, StartHooks } from '../../../src/lab/runtimes/runtime.js';
import { labUp } from '../../../src/lab/up.js';
import { type RunningLab, startLab } from '../../support/lab.js';

/** Runs `swap` right after the restart's measurement and before the program starts. */
class SwapAfterMeasurement extends ProcessRuntime {
  constructor(private readonly swap: () => Promise<void>) {
    super();
  }

  override start(launch: PartLaunch, hooks: StartHooks = {}): Promise<PartState> {
    return super.start(launch, {
      beforeRun: async (part) => {
        await hooks.beforeRun?.(part);
        await this.swap();
      },
    });
  }
}

/** Runs `swap` once, as the first service is about to be started (after `lab up` measured it). */
class SwapBeforeFirstStart extends ProcessRuntime {
  private done = false;
  constructor(private readonly swap: (launch: PartLaunch) => Promise<void>) {
    super();
  }

  override async start(launch: PartLaunch, hooks: StartHooks = {}): Promise<PartState> {
    if (launch.kind === 'service' && !this.done) {
      this.done = true;
      await this.swap(launch);
    }
    return super.start(launch, hooks);
  }
}

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

/**
 * The review's time-of-check/time-of-use attack on a restart (issue 14): the code folder is
 * measured, a different `service.mjs` is put in place before the program starts, and the original is
 * put back once it runs, so that every later measurement of the folder finds it pristine.
 */
describe('a service swapped between its measurement and its start (trusted, processes)', () => {
  let lab: RunningLab;
  let file: string;
  let original: Buffer;
  let marker: string;
  const service = 'catalog';
  const part = () => lab.state.parts.find((p) => p.name === service) as PartState;
  const read = async () =>
    callService(await lab.login('alice'), {
      gatewayUrl: lab.state.gatewayUrl,
      service,
      path: '/db/catalog/records',
    });

  beforeAll(async () => {
    lab = await startLab('trusted', 3);
    file = join(part().appDir as string, 'service.mjs');
    original = await readFile(file);
    marker = join(lab.home, 'evil-ran');
  }, 60_000);
  afterAll(async () => {
    await lab?.[Symbol.asyncDispose]();
  });

  const evil = () =>
    Buffer.concat([
      original,
      Buffer.from(
        `\nimport('node:fs').then((fs) => fs.writeFileSync(${JSON.stringify(marker)}, String(process.pid)));\n`,
      ),
    ]);

  it('swapped after the measurement: the measured code runs, not the swapped one', async () => {
    const runtime = new SwapAfterMeasurement(() => writeFile(file, evil()));
    try {
      const r = await restartService(lab.state, service, { runtime });
      expect(r.attestation).toBe('trusted');
    } finally {
      await writeFile(file, original);
    }
    expect(await exists(marker)).toBe(false);
    const { services } = await verifyServices(lab.home, [service]);
    expect(services[0]?.state).toBe('trusted');
    expect((await read()).status).toBe(200);
    // It runs from a read-only copy named by its hash, holding exactly the measured code; the
    // measured hash binds that code to the launch the runtime recorded (trusted).
    const copy = part().codeCopy as string;
    expect(copy).toContain((await hashDirectory(part().appDir as string)).hash.slice('sha256:'.length));
    expect(services[0]?.measuredHash).toBe(launchHash(hashOfCopy(copy), part().manifest as LaunchManifest));
    expect((await readFile(join(copy, 'service.mjs'))).equals(original)).toBe(true);
    expect((await stat(copy)).mode & 0o777).toBe(0o555);
    expect((await stat(join(copy, 'service.mjs'))).mode & 0o777).toBe(0o444);
    // Node is handed the measured bytes, not a path (measured-start.ts): the command line names the
    // copy's program and the tree hash those bytes must have.
    const cmdline = await readFile(`/proc/${part().pid}/cmdline`, 'utf8');
    expect(cmdline.split('\0').slice(1, -1)).toEqual(
      measuredStartArgv(copy, join(copy, 'service.mjs'), hashOfCopy(copy)),
    );
    expect(cmdline.split('\0')).toContain(join(copy, 'service.mjs'));
  }, 60_000);

  it('swapped before the start and put back once it runs: refused, and still refused after', async () => {
    await writeFile(file, evil());
    try {
      const r = await restartService(lab.state, service);
      expect(r.attestation).toBe('untrusted');
    } finally {
      await writeFile(file, original);
    }
    expect(await exists(marker)).toBe(true);
    // The folder is pristine again; what runs is not, and the re-measure says so.
    const { services } = await verifyServices(lab.home, [service]);
    expect(services[0]?.state).toBe('untrusted');
    expect(services[0]?.differs).toEqual(['code']);
    const refused = await read();
    expect(refused.status).toBe(503);
    expect((refused.body as { code?: string }).code).toBe('SERVICE_UNTRUSTED');
    // A restart from the pristine folder runs the registered code again.
    expect((await restartService(lab.state, service)).attestation).toBe('trusted');
    expect((await read()).status).toBe(200);
  }, 60_000);

  it('service register records the folder, and what runs is trusted once a restart runs it', async () => {
    const { hash: deployed } = await hashDirectory(part().appDir as string);
    const changed = Buffer.concat([original, Buffer.from('\n// a new release\n')]);
    try {
      await writeFile(file, changed);
      const [registered] = await registerServices(lab.home, [service]);
      // The folder's code, launched as the service's own start would launch it (trusted).
      const launchOf = async (code: string) =>
        launchHash(code, await serviceManifest({ configFile: part().configFile }, code));
      expect(registered?.expectedHash).toBe(
        await launchOf((await hashDirectory(part().appDir as string)).hash),
      );
      expect(registered?.expectedHash).not.toBe(await launchOf(deployed));
      // The old copy still runs: not the registered code.
      expect((await verifyServices(lab.home, [service])).services[0]).toMatchObject({
        state: 'untrusted',
        differs: ['code'],
      });
      expect((await restartService(lab.state, service)).attestation).toBe('trusted');
      expect((await read()).status).toBe(200);
    } finally {
      await writeFile(file, original);
      await registerServices(lab.home, [service]);
      await restartService(lab.state, service);
    }
    expect((await verifyServices(lab.home, [service])).services[0]?.state).toBe('trusted');
  }, 60_000);
});

describe('a service swapped between its measurement and its start by lab up (trusted, processes)', () => {
  it('is not started: lab up fails naming it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tms-swap-up-'));
    const home = join(dir, 'home');
    let swapped = '';
    const runtime = new SwapBeforeFirstStart(async (launch) => {
      swapped = launch.name;
      await appendFile(join(launch.appDir as string, 'service.mjs'), '\n// swapped\n');
    });
    try {
      await expect(labUp({ home, posture: 'trusted', services: 2, runtime })).rejects.toMatchObject({
        code: 'LAB_START_FAILED',
        message: expect.stringContaining(
          `${swapped}: its code changed between its measurement and its start`,
        ),
      });
      expect(swapped).not.toBe('');
    } finally {
      await labDown(home).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
