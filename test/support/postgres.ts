import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { describe, it } from 'vitest';
import { freePorts } from '../../src/lab/ports.js';
import {
  clusterDirFor,
  findPostgresProgram,
  initCluster,
  removeCluster,
  serverAccount,
  startCluster,
  stopCluster,
} from '../../src/store/postgres/local-server.js';

/**
 * A PostgreSQL server a test starts itself (initdb in a temporary cluster, 127.0.0.1, a free
 * port), through the same code the lab uses. Without initdb the tests that need one are skipped,
 * loudly; under CI=true that is a failure, never a skip (as for the Docker tests).
 */
export const postgresInstalled = findPostgresProgram('initdb') !== undefined;
const inCi = process.env.CI === 'true';

/** Call at a test file's top level: says why its PostgreSQL tests are skipped, or fails in CI. */
export function requirePostgresOrSkip(what: string): boolean {
  if (!postgresInstalled && !inCi) {
    console.warn(
      `\n!!! SKIPPED: ${what} (PostgreSQL's initdb is not installed: apt-get install -y postgresql-15).\n` +
        '!!! CI=true turns this skip into a failure.\n',
    );
  }
  describe.runIf(!postgresInstalled && inCi)(`${what} in CI`, () => {
    it('needs PostgreSQL', () => {
      throw new Error(`CI=true but initdb is missing: ${what} must not be skipped`);
    });
  });
  return postgresInstalled;
}

export const TEST_ROLE = 'trusted_ms';

export interface TestPostgres extends AsyncDisposable {
  port: number;
  password: string;
  /** 0600, what the lab's store reads its password from */
  passwordFile: string;
  /** A URL without the password, to a new empty database. */
  freshDatabase(): Promise<string>;
  /** A client of the `postgres` database, as the lab's role (for tampering in tests). */
  admin(database?: string): Promise<pg.Client>;
  stop(): Promise<void>;
}

let databases = 0;

export async function startTestPostgres(): Promise<TestPostgres> {
  const dir = await mkdtemp(join(tmpdir(), 'tms-pg-'));
  const account = serverAccount();
  const clusterDir = clusterDirFor(dir, account);
  const password = randomBytes(18).toString('base64url');
  await initCluster(clusterDir, account, TEST_ROLE, password);
  const [port] = (await freePorts(1)) as [number];
  await startCluster(clusterDir, account, port);
  const passwordFile = join(dir, 'postgres-password');
  await writeFile(passwordFile, password, { mode: 0o600 });
  const admin = async (database = 'postgres'): Promise<pg.Client> => {
    const client = new pg.Client({ host: '127.0.0.1', port, user: TEST_ROLE, password, database });
    await client.connect();
    return client;
  };
  const stop = async () => {
    // Its data goes next: no shutdown checkpoint (seconds on a busy disk after many databases).
    await stopCluster(clusterDir, account, 'immediate');
    await removeCluster(clusterDir);
    await rm(dir, { recursive: true, force: true });
  };
  return {
    port,
    password,
    passwordFile,
    admin,
    async freshDatabase() {
      databases += 1;
      const name = `t${process.pid}_${databases}`;
      const client = await admin();
      try {
        await client.query(`CREATE DATABASE ${name}`);
      } finally {
        await client.end();
      }
      return `postgres://${TEST_ROLE}@127.0.0.1:${port}/${name}`;
    },
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
