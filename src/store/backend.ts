import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { errnoCode, TrustedMsError } from '../errors.js';
import { writeFileDurably } from '../fs-sync.js';

/**
 * Which store a lab home uses, kept in the home (`store-backend.json`, 0600) so that every process
 * that opens the home's store (the security service, the CLI while the lab is down) opens the same
 * one. No file: the files of the home (the default). Written by `lab up --store postgres`; it stays
 * after `lab down` (the data does too) and goes with `lab down --purge`.
 */
export const STORE_BACKEND_FILE = 'store-backend.json';
/** The password of the lab's role on the PostgreSQL server the lab started (0600, never in argv or logs). */
export const POSTGRES_PASSWORD_FILE = 'postgres-password';

export interface PostgresBackend {
  kind: 'postgres';
  /** Without a password when `passwordFile` holds it; may carry one when the operator's URL does. */
  url: string;
  passwordFile?: string;
  /** The server the lab starts and stops itself (`lab up --store postgres` without --store-url). */
  managed?: {
    /** The cluster's folder: `data/` (PGDATA) and `server.log` */
    clusterDir: string;
    /** The OS account it runs as (`postgres` when the CLI runs as root). */
    osUser: string;
  };
}

export type StoreBackend = { kind: 'lowdb' } | PostgresBackend;

export function storeBackendFile(home: string): string {
  return join(home, STORE_BACKEND_FILE);
}

/** The home's store; read synchronously, as `openLabStore` is. */
export function readStoreBackend(home: string): StoreBackend {
  const file = storeBackendFile(home);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return { kind: 'lowdb' };
    throw new TrustedMsError('STORE_IO', `cannot read ${file} (${errnoCode(err) ?? 'error'})`);
  }
  try {
    const raw = JSON.parse(text) as Partial<PostgresBackend>;
    if (raw.kind !== 'postgres' || typeof raw.url !== 'string') throw new Error('shape');
    return raw as PostgresBackend;
  } catch {
    throw new TrustedMsError('STORE_CORRUPT', `${file} is not a trusted-ms store choice`, {
      actions: [
        `remove ${file} to use the files of the home, or run \`trusted-ms lab up --store postgres\` again`,
      ],
    });
  }
}

export async function writeStoreBackend(home: string, backend: PostgresBackend): Promise<void> {
  await writeFileDurably(storeBackendFile(home), `${JSON.stringify(backend, null, 2)}\n`, 0o600);
}

/** Back to the files of the home (their data was never touched). */
export function forgetStoreBackend(home: string): void {
  rmSync(storeBackendFile(home), { force: true });
}
