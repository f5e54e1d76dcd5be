import { chmod, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hashDirectory } from '../../../src/attestation/tree-hash.js';
import { copyMeasured, entryInCopy, hashOfCopy, releaseCopy } from '../../../src/lab/runtimes/code-copy.js';

describe('copyMeasured', () => {
  let dir: string;
  let app: string;
  let run: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tms-copy-'));
    app = join(dir, 'app');
    run = join(dir, 'run');
    await mkdir(join(app, 'lib'), { recursive: true });
    await writeFile(join(app, 'service.mjs'), 'console.log(1);\n');
    await writeFile(join(app, 'lib', 'start'), '#!/bin/sh\n', { mode: 0o755 });
    await symlink('service.mjs', join(app, 'current'));
  });
  afterEach(async () => {
    await releaseCopy(run);
    await rm(dir, { recursive: true, force: true });
  });

  it('copies the folder to a read-only place named by its tree hash, the same hash as the folder', async () => {
    const copy = await copyMeasured(app, run);
    expect(copy.hash).toBe((await hashDirectory(app)).hash);
    expect(copy.dir).toBe(join(run, copy.hash.slice('sha256:'.length)));
    expect(hashOfCopy(copy.dir)).toBe(copy.hash);
    expect((await hashDirectory(copy.dir)).hash).toBe(copy.hash);
    expect((await stat(copy.dir)).mode & 0o777).toBe(0o555);
    expect((await stat(join(copy.dir, 'lib'))).mode & 0o777).toBe(0o555);
    expect((await stat(join(copy.dir, 'service.mjs'))).mode & 0o777).toBe(0o444);
    expect((await stat(join(copy.dir, 'lib', 'start'))).mode & 0o777).toBe(0o555);
  });

  it('uses an intact copy again, replaces one changed since, and makes a new one for new code', async () => {
    const first = await copyMeasured(app, run);
    expect((await copyMeasured(app, run)).dir).toBe(first.dir);
    // Someone with the owner's rights changes the copy: the next start puts the measured code back.
    await chmod(first.dir, 0o755);
    await chmod(join(first.dir, 'service.mjs'), 0o644);
    await writeFile(join(first.dir, 'service.mjs'), 'evil();\n');
    const again = await copyMeasured(app, run);
    expect(again.dir).toBe(first.dir);
    expect(await readFile(join(again.dir, 'service.mjs'), 'utf8')).toBe('console.log(1);\n');
    await writeFile(join(app, 'service.mjs'), 'console.log(2);\n');
    const changed = await copyMeasured(app, run);
    expect(changed.hash).not.toBe(first.hash);
    expect(changed.hash).toBe((await hashDirectory(app)).hash);
  });

  it('starts are concurrent: every one gets the same complete copy', async () => {
    const copies = await Promise.all(Array.from({ length: 5 }, () => copyMeasured(app, run)));
    expect(new Set(copies.map((c) => c.dir)).size).toBe(1);
    expect((await hashDirectory(copies[0]?.dir as string)).hash).toBe(copies[0]?.hash);
  });
});

describe('entryInCopy', () => {
  it('maps a file of the folder into the copy, and nothing outside the folder', () => {
    expect(entryInCopy('/lab/app', '/lab/app/service.mjs', '/run/ab')).toBe('/run/ab/service.mjs');
    expect(entryInCopy('/lab/app', '/tmp/rogue/service.mjs', '/run/ab')).toBeUndefined();
    expect(entryInCopy('/lab/app', '/lab/app-evil/service.mjs', '/run/ab')).toBeUndefined();
    expect(entryInCopy('/lab/app', '/lab/app', '/run/ab')).toBeUndefined();
  });
});
