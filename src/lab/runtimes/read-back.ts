import { readFile, readlink } from 'node:fs/promises';
import type { LaunchManifest } from '../../attestation/launch-manifest.js';

/**
 * What the kernel says a running process is: its executable, its command line and the environment
 * it was started with. The launch manifest is what the runtime handed to the new process; a hook in
 * the CLI that changed the spawn after the manifest was made (the red team's `NODE_OPTIONS` added
 * back to every part, A2) shows here and nowhere else.
 */
export interface RunningProcess {
  /** the target of `/proc/<pid>/exe`; ` (deleted)` is appended by the kernel when the file was replaced */
  exe: string;
  /** `/proc/<pid>/cmdline`, split on NUL */
  cmdline: string[];
  /** `/proc/<pid>/environ`, as NAME → value */
  environ: Record<string, string>;
}

/**
 * Whether this platform lets the lab read a running process back (Linux's /proc). Elsewhere a
 * re-measure compares the recorded manifest only, and says so (docs/attestation.md).
 */
export const READS_BACK = process.platform === 'linux';

/** The process as the kernel has it, or undefined when it is gone (or the platform has no /proc). */
export async function readRunning(pid: number): Promise<RunningProcess | undefined> {
  if (!READS_BACK) return undefined;
  try {
    const [exe, cmdline, environ] = await Promise.all([
      readlink(`/proc/${pid}/exe`),
      readFile(`/proc/${pid}/cmdline`),
      readFile(`/proc/${pid}/environ`),
    ]);
    return { exe, cmdline: nulSeparated(cmdline), environ: environOf(nulSeparated(environ)) };
  } catch (err) {
    // Gone (ENOENT, ESRCH): nothing runs to be judged; liveness is the watchman's and lab status's.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ESRCH')
      return undefined;
    throw err;
  }
}

function nulSeparated(bytes: Buffer): string[] {
  const items = bytes.toString('utf8').split('\0');
  if (items.at(-1) === '') items.pop();
  return items;
}

function environOf(entries: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of entries) {
    const eq = e.indexOf('=');
    if (eq > 0) env[e.slice(0, eq)] = e.slice(eq + 1);
    else env[e] = '';
  }
  return env;
}

/**
 * Where the running process differs from the manifest recorded at its start, as field names:
 * `readback.exe`, `readback.cmdline` and `readback.environ.<NAME>` for each variable added, removed
 * or changed. Empty when the process is what was recorded.
 */
export function runningDifferences(manifest: LaunchManifest, running: RunningProcess): string[] {
  const out: string[] = [];
  if (running.exe !== manifest.interpreter.path) out.push('readback.exe');
  const expected = [manifest.interpreter.path, ...manifest.argv];
  if (running.cmdline.length !== expected.length || running.cmdline.some((arg, i) => arg !== expected[i]))
    out.push('readback.cmdline');
  const names = [...new Set([...Object.keys(manifest.env), ...Object.keys(running.environ)])].sort();
  for (const name of names) {
    if (manifest.env[name] !== running.environ[name]) out.push(`readback.environ.${name}`);
  }
  return out;
}
