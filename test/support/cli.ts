import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const runJs = join(repoRoot, 'bin', 'run.js');

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** A throw-away lab home and key folder, removed by `await using`. */
export async function tempLab(): Promise<{ home: string; keys: string; dir: string } & AsyncDisposable> {
  const dir = await mkdtemp(join(tmpdir(), 'tms-cli-'));
  return {
    dir,
    home: join(dir, 'home'),
    keys: join(dir, 'keys'),
    [Symbol.asyncDispose]: () => rm(dir, { recursive: true, force: true }),
  };
}

/** Runs the built CLI as a user would: a real process, with the given lab home and key folder. */
export async function cli(
  lab: { home: string; keys: string },
  args: string[],
  opts: { input?: string; timeoutMs?: number; env?: Record<string, string> } = {},
): Promise<CliResult> {
  const r = await execa(process.execPath, [runJs, ...args], {
    reject: false,
    input: opts.input ?? '',
    env: { TRUSTED_MS_HOME: lab.home, TRUSTED_MS_KEYS: lab.keys, NO_COLOR: '1', DEBUG: '', ...opts.env },
    timeout: opts.timeoutMs ?? 60_000,
  });
  const stderr = r.timedOut
    ? `timed out after ${opts.timeoutMs ?? 60_000} ms\n${r.stderr}`
    : String(r.stderr);
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr };
}

export async function cliJson<T = unknown>(
  lab: { home: string; keys: string },
  args: string[],
  opts: { input?: string; env?: Record<string, string> } = {},
): Promise<{ exitCode: number; json: T; stderr: string }> {
  const r = await cli(lab, [...args, '--json'], opts);
  return { exitCode: r.exitCode, json: JSON.parse(r.stdout) as T, stderr: r.stderr };
}
