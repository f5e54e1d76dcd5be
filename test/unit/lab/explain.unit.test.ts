import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { defencesFor } from '../../../src/defences/presets.js';
import { copyMeasured, releaseCopy } from '../../../src/lab/runtimes/code-copy.js';
import { serviceManifest } from '../../../src/lab/runtimes/launch.js';
import { ProcessRuntime } from '../../../src/lab/runtimes/process.js';

/** What `service verify` names for an untrusted service on processes (no process runs here). */
describe('ProcessRuntime.explain: which part of what runs differs from the registration', () => {
  let dir: string;
  let app: string;
  let configFile: string;
  const runtime = new ProcessRuntime();
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tms-explain-'));
    app = join(dir, 'app');
    configFile = join(dir, 'lab', 'parts', 'catalog.json');
    await mkdir(app, { recursive: true });
    await mkdir(join(dir, 'lab', 'parts'), { recursive: true });
    await writeFile(join(app, 'service.mjs'), 'console.log(1);\n');
    await writeFile(join(app, 'service.json'), '{"name":"catalog"}\n');
    await writeFile(
      configFile,
      JSON.stringify({ kind: 'service', defences: defencesFor('trusted'), peers: {} }),
    );
  });
  afterEach(async () => {
    await releaseCopy(join(dir, 'lab', 'run'));
    await rm(dir, { recursive: true, force: true });
  });

  /** The service as `lab up` registers it, then started with `env` as its pass-through. */
  const started = async (env?: Record<string, string>) => {
    const registered = await runtime.measure({ name: 'catalog', appDir: app, configFile });
    const copy = await copyMeasured(app, join(dir, 'lab', 'run'));
    const part = {
      name: 'catalog',
      appDir: app,
      configFile,
      codeCopy: copy.dir,
      ...(env ? { env } : {}),
      manifest: await serviceManifest({ configFile, ...(env ? { env } : {}) }, copy.hash),
    };
    return { registered, part };
  };

  it('an honest start measures as registered', async () => {
    const { registered, part } = await started();
    expect(await runtime.measure(part)).toBe(registered);
  });

  it('names the variable of a pass-through the registration did not have', async () => {
    const { registered, part } = await started({ NODE_OPTIONS: '--import=/tmp/evil.mjs' });
    expect(await runtime.measure(part)).not.toBe(registered);
    expect(await runtime.explain(part, registered)).toEqual(['env.NODE_OPTIONS']);
  });

  it('names the code when the folder changed after the start, or the code is not the registered one', async () => {
    const { registered, part } = await started();
    await writeFile(join(app, 'service.mjs'), 'console.log(2);\n');
    expect(await runtime.measure(part)).not.toBe(registered);
    expect(await runtime.explain(part, registered)).toEqual(['code']);
    // Swapped before the start: the folder and the copy agree, but not with the registration.
    const { part: swapped } = await started();
    expect(await runtime.explain(swapped, registered)).toEqual(['code']);
  });
});
