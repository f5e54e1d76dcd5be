import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  LAUNCH_MANIFEST_SCHEMA,
  type LaunchManifest,
  launchHash,
  manifestDifferences,
} from '../../../src/attestation/launch-manifest.js';
import { defencesFor } from '../../../src/defences/presets.js';
import { interpreterOf, serviceManifest } from '../../../src/lab/runtimes/launch.js';
import { measuredStartArgv } from '../../../src/lab/runtimes/measured-start.js';
import { PART_PATH } from '../../../src/lab/runtimes/part-env.js';

const CODE = `sha256:${'ab'.repeat(32)}`;
const base: LaunchManifest = {
  schema: LAUNCH_MANIFEST_SCHEMA,
  interpreter: { path: '/usr/bin/node', sha256: 'cd'.repeat(32) },
  argv: ['/lab/run/abab/service.mjs'],
  env: { NODE_ENV: 'production', PATH: PART_PATH, TMS_PART_CONFIG: '/lab/parts/customers.json' },
  config: { kind: 'service', securityUrl: 'https://127.0.0.1:1', peers: { accounts: 'https://127.0.0.1:2' } },
};

describe('launchHash', () => {
  it('is stable under key order and never a bare tree hash', () => {
    const reordered: LaunchManifest = {
      config: {
        peers: { accounts: 'https://127.0.0.1:2' },
        securityUrl: 'https://127.0.0.1:1',
        kind: 'service',
      },
      env: { TMS_PART_CONFIG: '/lab/parts/customers.json', PATH: PART_PATH, NODE_ENV: 'production' },
      argv: ['/lab/run/abab/service.mjs'],
      interpreter: { sha256: 'cd'.repeat(32), path: '/usr/bin/node' },
      schema: LAUNCH_MANIFEST_SCHEMA,
    };
    expect(launchHash(CODE, reordered)).toBe(launchHash(CODE, base));
    expect(launchHash(CODE, base)).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(launchHash(CODE, base)).not.toBe(CODE);
  });

  it('changes with the code and with every field of the manifest, and names the field', () => {
    const h = launchHash(CODE, base);
    const changed: [LaunchManifest, string[]][] = [
      [{ ...base, interpreter: { ...base.interpreter, sha256: 'ee'.repeat(32) } }, ['interpreter']],
      [{ ...base, interpreter: { ...base.interpreter, path: '/tmp/node' } }, ['interpreter']],
      [{ ...base, argv: ['--import=/tmp/evil.mjs', ...base.argv] }, ['argv']],
      [{ ...base, env: { ...base.env, NODE_OPTIONS: '--import=/tmp/evil.mjs' } }, ['env.NODE_OPTIONS']],
      [{ ...base, env: { ...base.env, PATH: '/tmp/bin' } }, ['env.PATH']],
      [{ ...base, config: { ...base.config, peers: { accounts: 'http://127.0.0.1:3' } } }, ['config.peers']],
      [{ ...base, config: { ...base.config, securityUrl: 'http://evil' } }, ['config.securityUrl']],
    ];
    for (const [m, fields] of changed) {
      expect(launchHash(CODE, m), fields.join()).not.toBe(h);
      expect(manifestDifferences(base, m)).toEqual(fields);
    }
    expect(launchHash(`sha256:${'ac'.repeat(32)}`, base)).not.toBe(h);
    expect(manifestDifferences(base, structuredClone(base))).toEqual([]);
  });
});

describe('the manifest of a service start', () => {
  let dir: string;
  const configFile = () => join(dir, 'lab', 'parts', 'customers.json');
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tms-manifest-'));
    await mkdir(join(dir, 'lab', 'parts'), { recursive: true });
    await writeFile(
      configFile(),
      JSON.stringify({ kind: 'service', defences: defencesFor('trusted'), peers: { accounts: 'x' } }),
    );
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("runs the copy named by the code hash with the service's environment, the pass-through and the config", async () => {
    const m = await serviceManifest({ configFile: configFile(), env: { FAKETIME: '-1h' } }, CODE);
    const copy = join(dir, 'lab', 'run', 'ab'.repeat(32));
    // Run from the measured bytes (measured-start.ts): the copy's program and the tree hash.
    expect(m.argv).toEqual(measuredStartArgv(copy, join(copy, 'service.mjs'), CODE));
    expect(m.argv).toContain(join(copy, 'service.mjs'));
    expect(m.env).toEqual({
      FAKETIME: '-1h',
      TMS_PART_CONFIG: configFile(),
      NODE_ENV: 'production',
      PATH: PART_PATH,
      TMS_CODE_DIR: copy,
    });
    expect(m.config).toMatchObject({ kind: 'service', peers: { accounts: 'x' } });
    expect(m.interpreter).toEqual(await interpreterOf(process.execPath));
    expect(m.interpreter.path).toBe(process.execPath);
    expect(m.interpreter.sha256).toMatch(/^[0-9a-f]{64}$/);
    // Without the pass-through it is another launch.
    const plain = await serviceManifest({ configFile: configFile() }, CODE);
    expect(manifestDifferences(m, plain)).toEqual(['env.FAKETIME']);
  });

  it("hashes the interpreter's file, and again once the file is another", async () => {
    const fake = join(dir, 'node');
    await writeFile(fake, 'one');
    const first = await interpreterOf(fake);
    expect(first.sha256).toBe('7692c3ad3540bb803c020b3aee66cd8887123234ea0c6e7143c0add73ff431ed');
    await rm(fake);
    await writeFile(fake, 'two');
    expect((await interpreterOf(fake)).sha256).toBe(
      '3fc4ccfe745870e2c0d99f71f30ff0656c8dedd41cc1d7d3d376b0dbe685e2f3',
    );
  });
});
