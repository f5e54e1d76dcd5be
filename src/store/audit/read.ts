import { readFile } from 'node:fs/promises';
import { errnoCode } from '../../errors.js';
import { corrupt, ioError } from './errors.js';
import { type AuditRecord, parseLine } from './record.js';

/** Lines of the chained log; `undefined` when it does not exist yet. A cut last line is left out. */
export async function readLines(file: string): Promise<string[] | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw ioError(file, 'read', err);
  }
  const lines = text.split('\n');
  // The part after the last newline is empty, or a line a writer is writing / a crash cut: not a record.
  lines.pop();
  return lines;
}

/** The lines as records, each checked for shape (not for the chain: see `verifyLines`). */
export function parseLines(file: string, lines: readonly string[]): AuditRecord[] {
  return lines.map((line, i) => {
    try {
      return parseLine(line);
    } catch (err) {
      throw corrupt(file, `line ${i + 1}: ${(err as Error).message}`);
    }
  });
}
