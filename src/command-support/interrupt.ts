/**
 * What a long command does on SIGINT (Ctrl-C) and SIGTERM: runs `cleanup` at once (not when the
 * step in flight ends), then exits 130 or 143 as a shell expects. A second signal while cleaning
 * up exits at once. SIGKILL cannot be caught: that case is what the persisted records are for
 * (the lab state, the attack run journal), which the next command reads.
 */
export function onInterrupt(
  cleanup: () => Promise<void>,
  say: (line: string) => void,
  signals: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM'],
): () => void {
  let cleaning = false;
  const handler = (signal: NodeJS.Signals): void => {
    const code = signal === 'SIGINT' ? 130 : 143;
    if (cleaning) process.exit(code);
    cleaning = true;
    say(`${signal}: cleaning up before exiting (again to exit at once)`);
    void cleanup()
      .catch((err: unknown) => say(`cleanup failed: ${(err as Error).message}`))
      .finally(() => process.exit(code));
  };
  for (const s of signals) process.on(s, handler);
  return () => {
    for (const s of signals) process.off(s, handler);
  };
}

/** As onInterrupt, for SIGTERM alone: for a command whose Ctrl-C does something else. */
export function onSigterm(cleanup: () => Promise<void>, say: (line: string) => void): () => void {
  return onInterrupt(cleanup, say, ['SIGTERM']);
}
