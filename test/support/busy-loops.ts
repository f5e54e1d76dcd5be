import { type ChildProcess, spawn } from 'node:child_process';

/**
 * Busy loops (`node -e 'for(;;);'`) that hold the cores while a test runs: started by the test and
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
    const child = spawn(process.execPath, ['-e', 'for(;;);'], { stdio: 'ignore' });
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
