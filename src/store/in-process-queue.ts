/**
 * Writers of one file inside this process queue here first, so they do not poll the file lock
 * against each other; the file lock then serialises them with other processes.
 */
const inProcessQueues = new Map<string, Promise<unknown>>();

export function serialised<R>(key: string, fn: () => Promise<R>): Promise<R> {
  const prev = inProcessQueues.get(key) ?? Promise.resolve();
  const run = prev.then(fn, fn);
  const tail = run.then(
    () => undefined,
    () => undefined,
  );
  inProcessQueues.set(key, tail);
  void tail.then(() => {
    if (inProcessQueues.get(key) === tail) inProcessQueues.delete(key);
  });
  return run;
}
