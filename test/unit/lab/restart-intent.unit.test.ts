import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { labDir } from '../../../src/kernel/lab-state.js';
import { markRestarting, restartingElsewhere } from '../../../src/lab/restart-intent.js';

let home: string;
beforeEach(async () => {
  home = await mkdtemp(join(tmpdir(), 'tms-intent-'));
});
afterEach(async () => {
  await rm(home, { recursive: true, force: true });
});

const recordOf = async (pid: number) => {
  await mkdir(join(labDir(home), 'restarting'), { recursive: true });
  await writeFile(join(labDir(home), 'restarting', 'customers.json'), JSON.stringify({ pid }));
};

describe('a restart under way elsewhere, which the watchman leaves alone', () => {
  it('counts while the restarting process lives, and not once it is gone', async () => {
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 10000)'], { stdio: 'ignore' });
    try {
      await recordOf(child.pid as number);
      expect(await restartingElsewhere(home, 'customers')).toBe(true);
      expect(await restartingElsewhere(home, 'accounts')).toBe(false);
    } finally {
      child.kill('SIGKILL');
      await new Promise((r) => child.on('exit', r));
    }
    // a CLI killed mid-restart leaves its record: it no longer holds the watchman back
    expect(await restartingElsewhere(home, 'customers')).toBe(false);
  });

  it('is this process’s own when it marked it, and goes when it is done', async () => {
    const done = await markRestarting(home, 'customers');
    expect(await restartingElsewhere(home, 'customers')).toBe(false); // our own: not "elsewhere"
    await done();
    await recordOf(process.pid);
    expect(await restartingElsewhere(home, 'customers')).toBe(false);
    await writeFile(join(labDir(home), 'restarting', 'customers.json'), 'not json');
    expect(await restartingElsewhere(home, 'customers')).toBe(false);
  });
});
