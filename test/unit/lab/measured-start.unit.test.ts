import { spawn } from 'node:child_process';
import { access, chmod, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFINITION_VARIABLE } from '../../../src/kernel/part-config.js';
import { type CodeCopy, copyMeasured, releaseCopy } from '../../../src/lab/runtimes/code-copy.js';
import {
  MEASURED_START_REFUSED,
  measuredPayload,
  measuredStartArgv,
} from '../../../src/lab/runtimes/measured-start.js';

/** Runs node with these arguments and this standard input; what it printed and how it ended. */
function run(args: string[], input?: Buffer): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      env: { PATH: '/usr/bin:/bin' },
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout?.on('data', (d) => {
      out += d;
    });
    child.stderr?.on('data', (d) => {
      err += d;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out, err }));
    if (input !== undefined) child.stdin?.end(input);
  });
}

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

describe('the measured start: Node runs the bytes that were measured, not a path', () => {
  let dir: string;
  let app: string;
  let copy: CodeCopy;
  let marker: string;
  const entry = () => join(copy.dir, 'service.mjs');

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tms-measured-'));
    app = join(dir, 'app');
    marker = join(dir, 'evil-ran');
    await mkdir(join(app, 'lib'), { recursive: true });
    // An ESM program like the bundle: createRequire(import.meta.url), a relative import, its
    // definition read from what the start hands over.
    await writeFile(
      join(app, 'service.mjs'),
      [
        "import { createRequire } from 'node:module';",
        "import { greeting } from './lib/greet.mjs';",
        'const require = createRequire(import.meta.url);',
        "const os = require('node:os');",
        `console.log(JSON.stringify({ url: import.meta.url, greeting, platform: os.platform(), definition: process.env.${DEFINITION_VARIABLE} }));`,
        '',
      ].join('\n'),
    );
    await writeFile(join(app, 'lib', 'greet.mjs'), "export const greeting = 'measured';\n");
    await writeFile(join(app, 'service.json'), '{"name":"catalog"}\n');
    copy = await copyMeasured(app, join(dir, 'run'));
  });
  afterEach(async () => {
    await releaseCopy(join(dir, 'run'));
    await rm(dir, { recursive: true, force: true });
  });

  /** The red team's swap: another program renamed over the copy's file before Node reads it. */
  const swapInCopy = async (file: string, source: string) => {
    await chmod(join(file, '..'), 0o755);
    await writeFile(`${file}.swap`, source);
    await rename(`${file}.swap`, file);
  };
  const evil = () =>
    `import { writeFileSync } from 'node:fs'; writeFileSync(${JSON.stringify(marker)}, 'ran');\n`;

  it('runs the handed bytes with the entry at its place in the copy, its imports and definition from them too', async () => {
    const r = await run(measuredStartArgv(copy.dir, entry(), copy.hash), measuredPayload(copy.entries));
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toEqual({
      url: `file://${entry()}`,
      greeting: 'measured',
      platform: process.platform,
      definition: '{"name":"catalog"}\n',
    });
  });

  it('never reads the copy after the measurement: files swapped in the copy before the start do not run', async () => {
    // Both ways: the same swap runs the attacker's code when Node is given the copy's path.
    await swapInCopy(entry(), evil());
    await swapInCopy(join(copy.dir, 'lib', 'greet.mjs'), "export const greeting = 'swapped';\n");
    const byPath = await run([entry()]);
    expect(byPath.code).toBe(0);
    expect(await exists(marker)).toBe(true);
    await rm(marker);

    const r = await run(measuredStartArgv(copy.dir, entry(), copy.hash), measuredPayload(copy.entries));
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out).greeting).toBe('measured');
    expect(await exists(marker)).toBe(false);
  });

  it('refuses bytes that are not the measured code: nothing of them runs', async () => {
    const tampered = copy.entries.map((e) =>
      e.kind === 'file' && e.path === 'service.mjs' ? { ...e, data: Buffer.from(evil()) } : e,
    );
    const r = await run(measuredStartArgv(copy.dir, entry(), copy.hash), measuredPayload(tampered));
    expect(r.code).toBe(MEASURED_START_REFUSED);
    expect(r.err).toMatch(/not the code measured as sha256:/);
    expect(await exists(marker)).toBe(false);

    // Bytes added after the measured ones (another writer on the pipe) are refused as well.
    const extra = Buffer.concat([measuredPayload(copy.entries), Buffer.from(evil())]);
    const appended = await run(measuredStartArgv(copy.dir, entry(), copy.hash), extra);
    expect(appended.code).toBe(MEASURED_START_REFUSED);
    expect(await exists(marker)).toBe(false);
  });

  it('recomputes the tree hash as hashDirectory does, symlinks and executable bits included', async () => {
    await writeFile(join(app, 'start.sh'), '#!/bin/sh\n', { mode: 0o755 });
    const { symlink } = await import('node:fs/promises');
    await symlink('service.mjs', join(app, 'current'));
    const withMore = await copyMeasured(app, join(dir, 'run'));
    const r = await run(
      measuredStartArgv(withMore.dir, join(withMore.dir, 'service.mjs'), withMore.hash),
      measuredPayload(withMore.entries),
    );
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(await readFile(join(withMore.dir, 'service.mjs'), 'utf8')).toContain('greeting');
  });
});
