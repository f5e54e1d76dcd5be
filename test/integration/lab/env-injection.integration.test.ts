import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readLabState } from '../../../src/kernel/lab-state.js';
import { ENGINE_VARIABLES } from '../../../src/lab/runtimes/part-env.js';
import { cli, cliJson, tempLab } from '../../support/cli.js';

/**
 * The review's attack on the environment: whoever controls the CLI's environment sets
 * `NODE_OPTIONS=--require=<file>` and, if the lab's parts inherit it, loads code nobody measured into
 * every one of them. The injected file leaves a marker naming the process it ran in.
 */
describe('the lab parts do not inherit the CLI environment', () => {
  it('NODE_OPTIONS=--require in the environment of lab up reaches no lab part', async () => {
    await using lab = await tempLab();
    const markers = join(lab.dir, 'markers');
    const injected = join(lab.dir, 'injected.cjs');
    await writeFile(
      injected,
      `require('node:fs').mkdirSync(${JSON.stringify(markers)}, { recursive: true });
require('node:fs').writeFileSync(
  require('node:path').join(${JSON.stringify(markers)}, String(process.pid)),
  JSON.stringify({ argv: process.argv, part: process.env.TMS_PART_CONFIG ?? null }),
);
`,
    );
    const env = { NODE_OPTIONS: `--require=${injected}`, npm_config_foo: 'bar', NODE_EXTRA_CA_CERTS: '/x' };
    const up = await cliJson<{ result: { state: { parts: { name: string }[] } } }>(
      lab,
      ['lab', 'up', '--runtime', 'process', '--services', '2'],
      { env },
    );
    try {
      expect(up.exitCode, up.stderr).toBe(0);
      // Every kind of part the process runtime starts: security, gateway, sink, services, watchman.
      const names = up.json.result.state.parts.map((p) => p.name).sort();
      expect(names).toEqual(expect.arrayContaining(['gateway', 'security', 'sink', 'supervisor']));
      // Kill one service so the watchman starts it again: what the watchman starts is a part too.
      const victim = (await readLabState(lab.home))?.parts.find((p) => p.kind === 'service');
      if (victim?.pid === undefined) throw new Error('no running service in the lab');
      process.kill(victim.pid, 'SIGKILL');
      await waitFor(async () => {
        const again = (await readLabState(lab.home))?.parts.find((p) => p.name === victim.name);
        return again?.pid !== undefined && again.pid !== victim.pid;
      }, 15_000);

      // The watchman measured the service it started again once it ran, read back from /proc.
      const watchman = (await readLabState(lab.home))?.parts.find((p) => p.kind === 'supervisor');
      expect(await readFile(watchman?.logFile as string, 'utf8')).toContain(
        `watchman: ${victim.name} measured as it runs: trusted`,
      );

      const written = await Promise.all(
        (await readdir(markers)).map(
          async (f) =>
            JSON.parse(await readFile(join(markers, f), 'utf8')) as { argv: string[]; part: string | null },
        ),
      );
      // The injection works (the CLI itself ran it), so finding no part among them means something.
      expect(written.some((m) => m.part === null)).toBe(true);
      expect(written.filter((m) => m.part !== null)).toEqual([]);
      // And the environment of every part running now, the restarted one included, is the lab's own.
      const parts = (await readLabState(lab.home))?.parts ?? [];
      expect(parts.find((p) => p.name === victim.name)?.pid).not.toBe(victim.pid);
      for (const part of parts) {
        const environ = await readFile(`/proc/${part.pid}/environ`, 'utf8');
        // A service is told the read-only copy it runs from, and reads its service.json there.
        if (part.kind === 'service') expect(environ.split('\0')).toContain(`TMS_CODE_DIR=${part.codeCopy}`);
        const names = environ
          .split('\0')
          .filter(Boolean)
          .map((v) => v.slice(0, v.indexOf('=')))
          .filter(
            (n) => !(part.kind === 'supervisor' && (ENGINE_VARIABLES as readonly string[]).includes(n)),
          );
        expect({ part: part.name, names: names.sort() }).toEqual({
          part: part.name,
          names:
            part.kind === 'service'
              ? ['NODE_ENV', 'PATH', 'TMS_CODE_DIR', 'TMS_PART_CONFIG']
              : ['NODE_ENV', 'PATH', 'TMS_PART_CONFIG'],
        });
      }
    } finally {
      await cli(lab, ['lab', 'down'], { env });
    }
  }, 90_000);
});

async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`not within ${timeoutMs} ms`);
}
