import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileError } from '../../disk-errors.js';
import { writeFileDurably } from '../../fs-sync.js';
import { labDir } from '../../kernel/lab-state.js';

/** What the watchman did for one part: how often it brought it back, and whether it gave up. */
export interface PartRestarts {
  restarts: number;
  lastRestartAt?: string;
  /** the watchman stopped trying after too many quick deaths in a row (Docker: on-failure:5) */
  gaveUp?: boolean;
  /**
   * Something listened on the part's address while it was dead and did not prove to be it (links:
   * mtls: no TLS handshake with its identity): taken for an impostor, never for the part restarted.
   */
  foreignListener?: { port: number; seenAt: string };
}

export type RestartRecord = Record<string, PartRestarts>;

export function restartsFile(home: string): string {
  return join(labDir(home), 'restarts.json');
}

/** The watchman's record (it is its only writer); none yet is an empty record. */
export async function readRestarts(home: string): Promise<RestartRecord> {
  try {
    return JSON.parse(await readFile(restartsFile(home), 'utf8')) as RestartRecord;
  } catch {
    return {};
  }
}

export async function writeRestarts(home: string, record: RestartRecord): Promise<void> {
  const file = restartsFile(home);
  await writeFileDurably(file, `${JSON.stringify(record, null, 2)}\n`, 0o600).catch((err: unknown) => {
    throw fileError(file, 'write', err);
  });
}
