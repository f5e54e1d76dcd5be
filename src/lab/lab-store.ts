import { randomBytes } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errnoCode, TrustedMsError } from '../errors.js';
import type { LabStoreState, RuntimeKind } from '../kernel/lab-state.js';
import {
  forgetStoreBackend,
  POSTGRES_PASSWORD_FILE,
  type PostgresBackend,
  readStoreBackend,
  writeStoreBackend,
} from '../store/backend.js';
import { redactUrl } from '../store/postgres/errors.js';
import {
  clusterDirFor,
  initCluster,
  removeCluster,
  serverAccount,
  startCluster,
  stopCluster,
} from '../store/postgres/local-server.js';
import { PostgresLabStore } from '../store/postgres/postgres-lab-store.js';
import { freePorts } from './ports.js';

/** `lab up --store`: the files of the home, or PostgreSQL (the lab's own server, or `url`'s). */
export type StoreChoice = { kind: 'lowdb' } | { kind: 'postgres'; url?: string };

export const STORE_CHOICES = ['lowdb', 'postgres'] as const;

/** The role the lab's own server is created with (its superuser; the server is the lab's alone). */
const LAB_ROLE = 'trusted_ms';

/**
 * The store a `lab up` will use: `choice`, else what the home used last (store-backend.json), else
 * the files. Refused at once (before any image is built) where it is not built yet.
 */
export function wantedStore(
  home: string,
  choice: StoreChoice | undefined,
  runtimeKind: RuntimeKind,
): StoreChoice {
  const current = readStoreBackend(home);
  const wanted: StoreChoice =
    choice ??
    (current.kind === 'postgres'
      ? { kind: 'postgres', ...(current.managed ? {} : { url: current.url }) }
      : { kind: 'lowdb' });
  if (wanted.kind === 'postgres' && runtimeKind !== 'process') {
    throw new TrustedMsError(
      'RUNTIME_UNSUPPORTED',
      `--store postgres is not built for the ${runtimeKind === 'swarm' ? 'Swarm' : 'Docker'} runtime yet (its PostgreSQL container is a later slice of issue 17)`,
      { actions: ["use --runtime process, or --store lowdb (the lab home's files)"] },
    );
  }
  return wanted;
}

/**
 * Makes the home's store ready before the security service starts. `choice` undefined: what the
 * home used last (store-backend.json), else the files. PostgreSQL without a URL: the lab's own
 * server (created on first use, started now on a free port of 127.0.0.1); with one, that server,
 * which must answer. Either way the schema is migrated here, so a bad URL, a wrong password or a
 * newer schema fails `lab up` with its code before any part starts.
 */
export async function prepareLabStore(
  home: string,
  choice: StoreChoice | undefined,
  runtimeKind: RuntimeKind,
  progress: (step: string) => void,
): Promise<LabStoreState> {
  const current = readStoreBackend(home);
  const wanted = wantedStore(home, choice, runtimeKind);
  if (wanted.kind === 'lowdb') {
    // The PostgreSQL data, if any, stays until `lab down --purge`.
    forgetStoreBackend(home);
    return { kind: 'lowdb' };
  }
  let backend: PostgresBackend;
  let serverPid: number | undefined;
  if (wanted.url !== undefined) {
    backend = { kind: 'postgres', url: wanted.url };
  } else {
    const account = serverAccount();
    const clusterDir =
      current.kind === 'postgres' && current.managed
        ? current.managed.clusterDir
        : clusterDirFor(home, account);
    const passwordFile = join(home, POSTGRES_PASSWORD_FILE);
    const password = await labPassword(passwordFile);
    if (await initCluster(clusterDir, account, LAB_ROLE, password))
      progress(`created the PostgreSQL cluster ${clusterDir}`);
    // A server left running by a lab that was not taken down is stopped first: it may be on a port
    // taken since, and its PID is not in this lab's state.
    await stopCluster(clusterDir, account);
    const [port] = (await freePorts(1)) as [number];
    backend = {
      kind: 'postgres',
      url: `postgres://${LAB_ROLE}@127.0.0.1:${port}/postgres`,
      passwordFile,
      managed: { clusterDir, osUser: account.name },
    };
    // Recorded before the start: a `lab up` killed right after it leaves a server `lab down` finds.
    await writeStoreBackend(home, backend);
    progress(`starting PostgreSQL on 127.0.0.1:${port}`);
    serverPid = await startCluster(clusterDir, account, port);
  }
  // Connects and migrates now, so that a failure is lab up's, with its code, before any part starts
  // (and the home keeps its last choice: a --store-url that does not work is not remembered).
  const store = new PostgresLabStore(home, {
    url: backend.url,
    ...(backend.passwordFile ? { passwordFile: backend.passwordFile } : {}),
  });
  try {
    await store.data();
  } catch (err) {
    if (backend.managed) await stopCluster(backend.managed.clusterDir, serverAccount()).catch(() => false);
    throw err;
  } finally {
    await store.close();
  }
  await writeStoreBackend(home, backend);
  return {
    kind: 'postgres',
    where: redactUrl(backend.url),
    ...(backend.managed && serverPid !== undefined
      ? { server: { pid: serverPid, clusterDir: backend.managed.clusterDir } }
      : {}),
  };
}

/** The lab role's password: made once (0600), read from then on; never in an argv or a log. */
async function labPassword(file: string): Promise<string> {
  try {
    const text = (await readFile(file, 'utf8')).trim();
    if (text !== '') return text;
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
  const password = randomBytes(24).toString('base64url');
  await writeFile(file, `${password}\n`, { mode: 0o600, flag: 'w' });
  return password;
}

export interface LabStoreDown {
  /** `postgres` when the lab's own server was running and is stopped now */
  stopped: string[];
  /** what `purge` removed */
  purged: string[];
}

/**
 * `lab down`: stops the server the lab started (the data stays, for the next `lab up`); with
 * `purge`, also removes its cluster and the home's choice of it, so the next lab uses the files
 * again. A server named by --store-url is never touched.
 */
export async function stopLabStore(home: string, opts: { purge?: boolean } = {}): Promise<LabStoreDown> {
  const backend = readStoreBackend(home);
  const result: LabStoreDown = { stopped: [], purged: [] };
  if (backend.kind !== 'postgres') return result;
  if (backend.managed) {
    const account = serverAccount();
    if (await stopCluster(backend.managed.clusterDir, account)) result.stopped.push('postgres');
    if (opts.purge) {
      await removeCluster(backend.managed.clusterDir);
      result.purged.push(backend.managed.clusterDir);
    }
  }
  if (opts.purge) {
    if (backend.passwordFile) await rm(backend.passwordFile, { force: true });
    forgetStoreBackend(home);
    result.purged.push('store-backend.json');
  }
  return result;
}
