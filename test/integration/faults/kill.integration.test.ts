import { readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { describe, expect, it } from 'vitest';
import { labDir, readLabState, stateFile } from '../../../src/kernel/lab-state.js';
import { processesOfLab } from '../../../src/lab/runtimes/process.js';
import { openLabStore } from '../../../src/store/open.js';
import { cli, repoRoot, tempLab } from '../../support/cli.js';
import { startLab } from '../../support/lab.js';

/**
 * Commands killed half-way, for real: the built CLI as a child process, killed with SIGKILL (no
 * handler can run) or SIGINT/SIGTERM, at a moment seen on disk; then what the next command does.
 */

const runJs = join(repoRoot, 'bin', 'run.js');
const BUNDLE = join(repoRoot, 'dist', 'lab', 'service.mjs');
const ATTACK_USER = /^tms-(victim|attacker|dos-user-\d+)$/;

function spawnCli(env: { home: string; keys: string }, args: string[]): ResultPromise {
  return execa(process.execPath, [runJs, ...args], {
    reject: false,
    env: { TRUSTED_MS_HOME: env.home, TRUSTED_MS_KEYS: env.keys, NO_COLOR: '1', DEBUG: '' },
  });
}

async function until(what: string, check: () => Promise<boolean>, ms = 60_000): Promise<void> {
  for (const end = Date.now() + ms; Date.now() < end; ) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function partsAlive(home: string): Promise<number[]> {
  return processesOfLab(join(labDir(home), 'parts'));
}

/** A temp lab home whose leftover processes are killed on dispose, even when the handling under test failed. */
async function killedLab(): Promise<Awaited<ReturnType<typeof tempLab>>> {
  const lab = await tempLab();
  return {
    ...lab,
    async [Symbol.asyncDispose]() {
      for (const pid of await partsAlive(lab.home)) process.kill(pid, 'SIGKILL');
      await lab[Symbol.asyncDispose]();
    },
  };
}

const exists = (file: string) =>
  stat(file).then(
    () => true,
    () => false,
  );

describe('lab up killed during start', () => {
  it('SIGKILL: the next `lab down` stops every process it had started', async () => {
    await using lab = await killedLab();
    const up = spawnCli(lab, ['lab', 'up', '--runtime', 'process', '--services', '2']);
    // Killed as soon as its first part runs: before the state file names them all (or at all).
    await until('the first part of the lab', async () => (await partsAlive(lab.home)).length > 0);
    up.kill('SIGKILL');
    await up;
    const down = await cli(lab, ['lab', 'down']);
    expect(down.exitCode, down.stderr).toBe(0);
    await until('no process of the lab', async () => (await partsAlive(lab.home)).length === 0, 5_000);
  });

  it('SIGKILL before the state file was written: `lab down` still finds its processes by their config path', async () => {
    await using lab = await killedLab();
    const up = spawnCli(lab, ['lab', 'up', '--runtime', 'process', '--services', '2']);
    await until('the first part of the lab', async () => (await partsAlive(lab.home)).length > 0);
    up.kill('SIGKILL');
    await up;
    // The window between the first start and the first state write is microseconds wide: a kill
    // inside it cannot be timed from outside, so its result is made by removing the state file.
    await rm(stateFile(lab.home), { force: true });
    expect((await partsAlive(lab.home)).length).toBeGreaterThan(0);
    const down = await cli(lab, ['lab', 'down']);
    expect(down.exitCode, down.stderr).toBe(0);
    expect(down.stdout).toMatch(/stopped \d+ leftover process\(es\) of an interrupted start/);
    await until('no process of the lab', async () => (await partsAlive(lab.home)).length === 0, 5_000);
  });

  it.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)('%s: stops what it started at once and exits %i, no `lab down` needed', async (signal, code) => {
    await using lab = await killedLab();
    const up = spawnCli(lab, ['lab', 'up', '--runtime', 'process', '--services', '2']);
    await until('the first part of the lab', async () => (await partsAlive(lab.home)).length > 0);
    up.kill(signal);
    const r = await up;
    expect(r.exitCode, String(r.stderr)).toBe(code);
    expect(await partsAlive(lab.home)).toEqual([]);
    expect(await readLabState(lab.home)).toBeUndefined();
  });
});

describe('attack simulate killed while the lab it brought up runs', () => {
  it('SIGKILL: the next `lab down` in its home takes that lab down and removes its temporary home', async () => {
    await using lab = await killedLab();
    const run = spawnCli(lab, [
      'attack',
      'simulate',
      'privilege.cross-database',
      '--posture',
      'none',
      '--services',
      '2',
    ]);
    let temp: { home: string; dir: string } | undefined;
    await until('the lab of the run up', async () => {
      const journal = await readFile(join(lab.home, 'attack-run', 'journal.json'), 'utf8').catch(() => '');
      temp =
        journal === ''
          ? undefined
          : (JSON.parse(journal) as { tempLabs: { home: string; dir: string }[] }).tempLabs[0];
      return temp !== undefined && (await partsAlive(temp.home)).length > 0;
    });
    run.kill('SIGKILL');
    await run;
    const { home: tempHome, dir } = temp as { home: string; dir: string };
    try {
      const down = await cli(lab, ['lab', 'down']);
      expect(down.exitCode, down.stderr).toBe(0);
      expect(down.stdout).toMatch(/took down the lab it started/);
      await until(
        "no process of the run's lab",
        async () => (await partsAlive(tempHome)).length === 0,
        5_000,
      );
      expect(await exists(dir)).toBe(false);
      expect(await exists(join(lab.home, 'attack-run'))).toBe(false);
    } finally {
      for (const pid of await partsAlive(tempHome)) process.kill(pid, 'SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('attack simulate killed during a scenario on the lab of its home', () => {
  /** Runs the tampered-code scenario and sends `signal` once the customers service's code is tampered. */
  async function killMidScenario(
    env: { home: string; keys: string },
    appDir: string,
    signal: 'SIGKILL' | 'SIGINT',
  ): Promise<{ exitCode: number | undefined; stderr: string }> {
    const original = await readFile(BUNDLE);
    const run = spawnCli(env, [
      'attack',
      'simulate',
      'malicious-service.tampered-code',
      '--posture',
      'trusted',
    ]);
    await until('the tampered code in place', async () => {
      const now = await readFile(join(appDir, 'service.mjs')).catch(() => original);
      return !now.equals(original);
    });
    run.kill(signal);
    const r = await run;
    return { exitCode: r.exitCode, stderr: String(r.stderr) };
  }

  /** `said`: what the command printed, shown when something was left (a cleanup that failed says why). */
  async function expectNothingLeft(home: string, appDir: string, said = ''): Promise<void> {
    expect((await readFile(join(appDir, 'service.mjs'))).equals(await readFile(BUNDLE)), said).toBe(true);
    expect(await exists(join(appDir, 'attacker.json')), said).toBe(false);
    const users = Object.keys((await openLabStore(home).data()).users);
    expect(
      users.filter((u) => ATTACK_USER.test(u)),
      said,
    ).toEqual([]);
    expect(await exists(join(home, 'attack-keys'))).toBe(false);
    expect(await exists(join(home, 'attack-run'))).toBe(false);
  }

  it('SIGKILL: the next `lab down` reverts the tampered code and removes the attack users; no process is left', async () => {
    await using lab = await startLab('trusted', 3);
    const appDir = lab.state.parts.find((p) => p.name === 'customers')?.appDir as string;
    const killed = await killMidScenario(lab, appDir, 'SIGKILL');
    expect(killed.exitCode).toBeUndefined();
    // The kill left it tampered, and the attack users in the store: what there is to clean.
    expect((await readFile(join(appDir, 'service.mjs'))).equals(await readFile(BUNDLE))).toBe(false);
    expect(Object.keys((await openLabStore(lab.home).data()).users).some((u) => ATTACK_USER.test(u))).toBe(
      true,
    );

    const down = await cli(lab, ['lab', 'down']);
    expect(down.exitCode, down.stderr).toBe(0);
    expect(down.stdout).toMatch(/Reverted \(interrupted attack run\): customers/);
    await expectNothingLeft(lab.home, appDir);
    expect(await partsAlive(lab.home)).toEqual([]);
  });

  it('SIGKILL: the next `attack simulate` reverts first, and the lab serves the original code, attested', async () => {
    await using lab = await startLab('trusted', 3);
    const appDir = lab.state.parts.find((p) => p.name === 'customers')?.appDir as string;
    await killMidScenario(lab, appDir, 'SIGKILL');
    const next = await cli(lab, ['attack', 'simulate', 'privilege.cross-database', '--posture', 'trusted']);
    expect(next.exitCode, next.stderr).toBe(0);
    expect(next.stderr).toMatch(/reverted what a killed run left: customers/);
    await expectNothingLeft(lab.home, appDir);
    const verify = await cli(lab, ['service', 'verify', 'customers']);
    expect(verify.exitCode, verify.stdout + verify.stderr).toBe(0);
  });

  it('SIGINT: reverts at once and exits 130', async () => {
    await using lab = await startLab('trusted', 3);
    const appDir = lab.state.parts.find((p) => p.name === 'customers')?.appDir as string;
    const r = await killMidScenario(lab, appDir, 'SIGINT');
    expect(r.exitCode, r.stderr).toBe(130);
    await expectNothingLeft(lab.home, appDir, r.stderr);
    const verify = await cli(lab, ['service', 'verify', 'customers']);
    expect(verify.exitCode, verify.stdout + verify.stderr).toBe(0);
  });
});

describe('lab load killed during a run (host clients)', () => {
  const loadUsers = async (home: string) =>
    Object.keys((await openLabStore(home).data()).users).filter((u) => u.startsWith('load-'));
  const loading = async (lab: { home: string; keys: string }): Promise<{ run: ResultPromise }> => {
    const run = spawnCli(lab, ['lab', 'load', '--clients', '2', '--duration', '60s']);
    await until('the load users', async () => (await loadUsers(lab.home)).length === 2);
    // Wrapped: an async function returning the child (a thenable) would wait for it to exit.
    return { run };
  };

  it('SIGTERM: its users are removed at once, exit 143; SIGKILL: the next `lab down` removes them', async () => {
    await using lab = await startLab('trusted', 2);
    const term = await loading(lab);
    const t0 = Date.now();
    term.run.kill('SIGTERM');
    const r = await term.run;
    expect(r.exitCode, String(r.stderr)).toBe(143);
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(await loadUsers(lab.home)).toEqual([]);

    const killed = await loading(lab);
    killed.run.kill('SIGKILL');
    await killed.run;
    expect(await loadUsers(lab.home)).toHaveLength(2);
    const down = await cli(lab, ['lab', 'down']);
    expect(down.exitCode, down.stderr).toBe(0);
    expect(down.stdout).toMatch(/Cleaned up \(killed load run\): removed 2 load user\(s\)/);
    expect(await loadUsers(lab.home)).toEqual([]);
  }, 240_000);
  it('SIGKILL, then a security service that does not answer: `lab down` still succeeds and removes the users, once the lab is down', async () => {
    await using lab = await startLab('trusted', 2);
    const killed = await loading(lab);
    killed.run.kill('SIGKILL');
    await killed.run;
    expect(await loadUsers(lab.home)).toHaveLength(2);
    const security = lab.state.parts.find((p) => p.kind === 'security')?.pid;
    if (security === undefined) throw new Error('the security service has no pid');
    // Stopped, it neither answers nor dies: the CLI may not write the store around it while it runs.
    process.kill(security, 'SIGSTOP');
    try {
      const down = await cli(lab, ['lab', 'down'], { timeoutMs: 120_000 });
      expect(down.exitCode, down.stderr).toBe(0);
      expect(down.stdout).toMatch(/Cleaned up \(killed load run\): removed 2 load user\(s\)/);
    } finally {
      try {
        process.kill(security, 'SIGCONT');
      } catch {
        // gone: lab down stopped it
      }
    }
    expect(await loadUsers(lab.home)).toEqual([]);
  }, 240_000);
});
