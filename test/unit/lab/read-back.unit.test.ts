import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { LAUNCH_MANIFEST_SCHEMA, type LaunchManifest } from '../../../src/attestation/launch-manifest.js';
import { PART_PATH } from '../../../src/lab/runtimes/part-env.js';
import {
  READS_BACK,
  type RunningProcess,
  readRunning,
  runningDifferences,
} from '../../../src/lab/runtimes/read-back.js';

const manifest: LaunchManifest = {
  schema: LAUNCH_MANIFEST_SCHEMA,
  interpreter: { path: '/usr/bin/node', sha256: 'cd'.repeat(32) },
  argv: [
    '--input-type=module',
    '--eval',
    'code',
    '/lab/run/abab',
    '/lab/run/abab/service.mjs',
    'sha256:abab',
  ],
  env: { NODE_ENV: 'production', PATH: PART_PATH, TMS_PART_CONFIG: '/lab/parts/customers.json' },
  config: { kind: 'service' },
};
const honest: RunningProcess = {
  exe: manifest.interpreter.path,
  cmdline: [manifest.interpreter.path, ...manifest.argv],
  environ: { ...manifest.env },
};

describe('runningDifferences: the running process against its recorded launch', () => {
  it('finds nothing in the process that was recorded', () => {
    expect(runningDifferences(manifest, structuredClone(honest))).toEqual([]);
  });

  it('names each field that differs, and each variable', () => {
    const cases: [Partial<RunningProcess>, string[]][] = [
      [{ exe: '/tmp/node' }, ['readback.exe']],
      // The kernel's mark of an executable replaced on disk since the start.
      [{ exe: `${manifest.interpreter.path} (deleted)` }, ['readback.exe']],
      [
        { cmdline: [manifest.interpreter.path, '--import=/tmp/evil.mjs', ...manifest.argv] },
        ['readback.cmdline'],
      ],
      [{ cmdline: [manifest.interpreter.path, ...manifest.argv.slice(0, -1)] }, ['readback.cmdline']],
      // The red team's A2: NODE_OPTIONS added to the spawn by a hook in the CLI, after the manifest.
      [
        { environ: { ...manifest.env, NODE_OPTIONS: '--import=/tmp/evil.mjs' } },
        ['readback.environ.NODE_OPTIONS'],
      ],
      [{ environ: { ...manifest.env, PATH: '/tmp/bin' } }, ['readback.environ.PATH']],
      [
        { environ: { NODE_ENV: 'production', PATH: PART_PATH, LD_PRELOAD: '/tmp/x.so' } },
        ['readback.environ.LD_PRELOAD', 'readback.environ.TMS_PART_CONFIG'],
      ],
    ];
    for (const [change, fields] of cases) {
      expect(runningDifferences(manifest, { ...honest, ...change }), fields.join()).toEqual(fields);
    }
  });
});

describe.runIf(READS_BACK)('readRunning: what /proc says of a process', () => {
  it('reads the executable, the command line and the environment it was started with', async () => {
    const env = { PATH: PART_PATH, TMS_READ_BACK: 'a=b c' };
    const child = spawn(
      process.execPath,
      ['-e', 'process.env.LATER = "1"; setTimeout(() => {}, 5000)', 'x y'],
      {
        env,
        stdio: 'ignore',
      },
    );
    try {
      await new Promise((r) => setTimeout(r, 200));
      const running = await readRunning(child.pid as number);
      expect(running).toEqual({
        exe: process.execPath,
        cmdline: [process.execPath, '-e', 'process.env.LATER = "1"; setTimeout(() => {}, 5000)', 'x y'],
        // As at exec: a variable the process sets itself later is not there.
        environ: env,
      });
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('says nothing of a process that is gone', async () => {
    const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
    await new Promise((r) => child.on('exit', r));
    await new Promise((r) => setTimeout(r, 50));
    expect(await readRunning(child.pid as number)).toBeUndefined();
  });
});
