import { type ChildProcess, spawn } from 'node:child_process';

/**
 * Busy loops (`node -e`) that hold the cores while a test runs: started by the test and
 * stopped by it, by their own handles. One that something else ends is started again (and counted
 * in `ended`), so the cores stay loaded for the whole run.
 */
export class BusyLoops {
  private readonly running = new Set<ChildProcess>();
  /** how each loop that ended before stop() ended (something else on the machine ended it) */
  readonly ended: string[] = [];
  private stopping = false;

  static async start(count: number): Promise<BusyLoops> {
    const loops = new BusyLoops();
    for (let i = 0; i < count; i++) await loops.spin();
    return loops;
  }

  /** How many are spinning now. */
  get spinning(): number {
    return [...this.running].filter((c) => c.exitCode === null && c.signalCode === null).length;
  }

  /** Every loop killed and waited for, so nothing of the test outlives it. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(
      [...this.running].map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise<void>((r) => child.once('exit', () => r()));
        child.kill('SIGKILL');
        await exited;
      }),
    );
  }

  private async spin(): Promise<void> {
    const child = spawn(process.execPath, ['-e', loopSource(process.pid)], { stdio: 'ignore' });
    this.running.add(child);
    child.once('exit', (code, signal) => {
      this.running.delete(child);
      if (this.stopping) return;
      this.ended.push(String(signal ?? code));
      void this.spin();
    });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
  }
}

/** A loop's longest life: past any test that uses them (dos-busy, matrix-busy take minutes). */
const MAX_LOOP_MS = 30 * 60_000;

/**
 * The loop's program. It ends by itself once its parent is gone or after MAX_LOOP_MS: a test run
 * killed from outside (SIGKILL, or a CI step cut short) cannot stop() it, and two loops left
 * spinning once held the cores for 21 minutes under the next CI run. The checks are rare enough
 * (one per 2^22 turns, a few ms apart) to keep the loop busy.
 */
export function loopSource(parentPid: number, maxMs = MAX_LOOP_MS): string {
  return `const end=Date.now()+${maxMs};for(let i=1;;i++){if((i&0x3fffff)===0&&(process.ppid!==${parentPid}||Date.now()>end))process.exit(0)}`;
}
