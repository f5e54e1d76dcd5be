import { open, stat } from 'node:fs/promises';
import { errnoCode } from '../../errors.js';
import { corrupt, ioError } from './errors.js';
import { type AuditRecord, parseLine } from './record.js';

/** The log's size in bytes now (0 when it does not exist): where `followLog` starts. */
export async function logSize(file: string): Promise<number> {
  try {
    return (await stat(file)).size;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return 0;
    throw ioError(file, 'read', err);
  }
}

/**
 * Records appended to `file` after byte `offset`, polled every `intervalMs` until `signal` aborts.
 * Only whole lines are read; a log that shrank (replaced, or restored from a backup) is read again
 * from the start.
 */
export async function* followLog(
  file: string,
  offset: number,
  signal: AbortSignal,
  intervalMs: number,
): AsyncGenerator<AuditRecord> {
  let pos = offset;
  while (!signal.aborted) {
    let size = 0;
    try {
      size = (await stat(file)).size;
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw ioError(file, 'read', err);
    }
    if (size < pos) pos = 0;
    if (size > pos) {
      const handle = await open(file, 'r');
      try {
        const buf = Buffer.alloc(size - pos);
        const { bytesRead } = await handle.read(buf, 0, buf.length, pos);
        const text = buf.subarray(0, bytesRead);
        const end = text.lastIndexOf(0x0a);
        if (end >= 0) {
          for (const line of text.subarray(0, end).toString('utf8').split('\n')) {
            try {
              yield parseLine(line);
            } catch (err) {
              throw corrupt(file, `at byte ${pos}: ${(err as Error).message}`);
            }
          }
          pos += end + 1;
        }
      } finally {
        await handle.close();
      }
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, intervalMs);
      signal.addEventListener(
        'abort',
        () => {
          clearTimeout(timer);
          resolve();
        },
        { once: true },
      );
    });
  }
}
