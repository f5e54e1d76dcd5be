import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ServiceAttestation } from '../../../src/lab/attest.js';
import { cli, cliJson, tempLab } from '../../support/cli.js';

/**
 * The independent red team's A2 (2026-12-07): a module loaded into the CLI through its own
 * environment patches the spawn of child processes and adds NODE_OPTIONS back to every lab part,
 * after the lab made, and recorded, each part's clean environment. The launch manifest then says
 * what the runtime meant to hand over; only the running process, read back from /proc, says what
 * it got. Linux only (/proc).
 */
describe.runIf(process.platform === 'linux')('a running service is read back against its launch', () => {
  it('NODE_OPTIONS added to the spawn by a hook in the CLI: every service untrusted, the field named', async () => {
    await using lab = await tempLab();
    const markers = join(lab.dir, 'markers');
    const injected = join(lab.dir, 'injected.cjs');
    const hook = join(lab.dir, 'hook.mjs');
    await writeFile(
      injected,
      `require('node:fs').mkdirSync(${JSON.stringify(markers)}, { recursive: true });
require('node:fs').writeFileSync(require('node:path').join(${JSON.stringify(markers)}, String(process.pid)), process.env.TMS_PART_CONFIG ?? '');
`,
    );
    await writeFile(
      hook,
      `import { ChildProcess } from 'node:child_process';
const spawn = ChildProcess.prototype.spawn;
ChildProcess.prototype.spawn = function (options) {
  if (options?.envPairs?.some((e) => e.startsWith('TMS_PART_CONFIG='))) {
    options.envPairs.push(${JSON.stringify(`NODE_OPTIONS=--require=${injected}`)});
  }
  return spawn.call(this, options);
};
`,
    );
    const up = await cli(
      lab,
      ['lab', 'up', '--runtime', 'process', '--services', '2', '--posture', 'trusted'],
      {
        env: { NODE_OPTIONS: `--import=${hook}` },
      },
    );
    try {
      expect(up.exitCode, up.stderr).toBe(0);
      const verify = await cliJson<{ result: { services: ServiceAttestation[] } }>(lab, [
        'service',
        'verify',
        '--all',
      ]);
      expect(verify.exitCode).toBe(8);
      const services = verify.json.result.services;
      expect(services.length).toBe(2);
      // The hook works: code nobody measured runs in each service (so the verdicts mean something).
      const ran = await Promise.all((await readdir(markers)).map((f) => readFile(join(markers, f), 'utf8')));
      for (const s of services) {
        expect(
          ran.some((config) => config.endsWith(`/parts/${s.name}.json`)),
          s.name,
        ).toBe(true);
        expect(s, s.name).toMatchObject({ state: 'untrusted', differs: ['readback.environ.NODE_OPTIONS'] });
      }
      const human = await cli(lab, ['service', 'verify', '--all']);
      expect(human.exitCode).toBe(8);
      expect(human.stderr).toMatch(/readback\.environ\.NODE_OPTIONS/);
    } finally {
      await cli(lab, ['lab', 'down']);
    }
  }, 120_000);
});
