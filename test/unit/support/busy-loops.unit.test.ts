import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loopSource } from '../../support/busy-loops.js';

function gone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
}

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return cond();
}

describe('a busy loop of the tests', () => {
  it('ends by itself once the process that started it is killed', async () => {
    // A parent that starts a loop, says its pid, and is then killed as a cut-short test run is.
    const parent = spawn(
      process.execPath,
      [
        '-e',
        `const {spawn}=require('node:child_process');const c=spawn(process.execPath,['-e',${JSON.stringify(
          loopSource(0),
        )}.replace('!==0','!=='+process.pid)],{stdio:'ignore'});console.log(c.pid);setInterval(()=>{},1000)`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const loopPid = await new Promise<number>((r) =>
      parent.stdout.once('data', (d) => r(Number(String(d).trim()))),
    );
    // It spins while its parent lives...
    await new Promise((r) => setTimeout(r, 300));
    expect(gone(loopPid)).toBe(false);
    parent.kill('SIGKILL');
    // ...and is gone soon after it died (reparented: its ppid changed).
    expect(await until(() => gone(loopPid) || isZombie(loopPid), 5000)).toBe(true);
  });

  it('ends by itself after its longest life', async () => {
    const loop = spawn(process.execPath, ['-e', loopSource(process.pid, 300)], { stdio: 'ignore' });
    const code = await new Promise<number | null>((r) => loop.once('exit', (c) => r(c)));
    expect(code).toBe(0);
  });
});

/** A child of init that exited is a zombie until reaped: it no longer spins. */
function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}
