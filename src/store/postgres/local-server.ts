import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { appendFile, chown, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { errnoCode, TrustedMsError } from '../../errors.js';

/**
 * A PostgreSQL server of our own on this host (the lab's, and the tests'): `initdb` once, then
 * `pg_ctl start` on 127.0.0.1 and a given port, and `pg_ctl stop`.
 *
 * initdb and the server refuse to run as root, so when the CLI runs as root they run as the
 * `postgres` account, and the cluster cannot live in the lab home: the home is 0700 (and its
 * parents, e.g. /root, may be too), and opening it to another account would expose everything in
 * it whose own mode is loose. So a root-run lab keeps its cluster in the postgres account's own
 * home, `~postgres/trusted-ms/<hash of the lab home>` (postgres, 0700), where Debian keeps its own
 * clusters; the lab home stays root's and untouched, and records where the cluster is
 * (store-backend.json). Run as anyone else, the cluster is `<home>/postgres` (0700).
 *
 * The lab's role has a password (scram-sha-256 on 127.0.0.1) handed to initdb in a 0600 file inside
 * the cluster's folder and removed at once: it is never in an argv (ps) or a log. No Unix socket.
 */

export interface OsAccount {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

const SEARCH_DIRS = [
  '/usr/local/bin',
  '/usr/lib/postgresql/17/bin',
  '/usr/lib/postgresql/16/bin',
  '/usr/lib/postgresql/15/bin',
];

/** initdb or pg_ctl: on PATH, else where Debian's postgresql packages put them. */
export function findPostgresProgram(name: 'initdb' | 'pg_ctl'): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...SEARCH_DIRS];
  return dirs.map((d) => join(d, name)).find((f) => existsSync(f));
}

function requireProgram(name: 'initdb' | 'pg_ctl'): string {
  const found = findPostgresProgram(name);
  if (found === undefined) {
    throw new TrustedMsError('LAB_START_FAILED', `PostgreSQL's ${name} is not installed here`, {
      actions: [
        'apt-get install -y postgresql-15',
        'or give an existing server with --store-url postgres://...',
      ],
    });
  }
  return found;
}

function accountNamed(name: string): OsAccount | undefined {
  let passwd: string;
  try {
    passwd = readFileSync('/etc/passwd', 'utf8');
  } catch {
    return undefined;
  }
  for (const line of passwd.split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f.length >= 7)
      return { name, uid: Number(f[2]), gid: Number(f[3]), home: f[5] as string };
  }
  return undefined;
}

/** Who runs initdb and the server: this user, or `postgres` when this is root. */
export function serverAccount(): OsAccount {
  const uid = process.getuid?.() ?? 0;
  if (uid !== 0) return { name: String(uid), uid, gid: process.getgid?.() ?? 0, home: '' };
  const pg = accountNamed('postgres');
  if (pg === undefined) {
    throw new TrustedMsError(
      'LAB_START_FAILED',
      'running as root, PostgreSQL needs the `postgres` account, and there is none',
      {
        actions: [
          'apt-get install -y postgresql-15 (it creates the account)',
          'or run trusted-ms as another user',
        ],
      },
    );
  }
  return pg;
}

function asRoot(): boolean {
  return (process.getuid?.() ?? 1) === 0;
}

/** Where the cluster of the lab home `home` lives (see the layout above). */
export function clusterDirFor(home: string, account: OsAccount): string {
  if (!asRoot()) return join(home, 'postgres');
  const key = createHash('sha256').update(home).digest('hex').slice(0, 16);
  return join(account.home, 'trusted-ms', key);
}

function run(program: string, args: string[], account: OsAccount, cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      program,
      args,
      {
        cwd,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' },
        ...(asRoot() ? { uid: account.uid, gid: account.gid } : {}),
        timeout: 60_000,
      },
      (err, stdout, stderr) => {
        if (err) {
          reject(
            new TrustedMsError(
              'LAB_START_FAILED',
              `${program} ${args.at(-1)} failed: ${`${stderr}${stdout}`.trim().split('\n').slice(-3).join(' / ') || err.message}`,
              { cause: err },
            ),
          );
        } else resolve(stdout);
      },
    );
  });
}

async function ownedDir(dir: string, account: OsAccount): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (asRoot()) await chown(dir, account.uid, account.gid);
}

export function dataDirOf(clusterDir: string): string {
  return join(clusterDir, 'data');
}

export function serverLogOf(clusterDir: string): string {
  return join(clusterDir, 'server.log');
}

/**
 * Creates the cluster unless it exists: the superuser `role` with `password`, scram-sha-256 over
 * TCP, peer on the (disabled) socket. --no-sync: a lab's cluster, made again if a crash loses it.
 * Returns whether it was created.
 */
export async function initCluster(
  clusterDir: string,
  account: OsAccount,
  role: string,
  password: string,
): Promise<boolean> {
  const data = dataDirOf(clusterDir);
  if (existsSync(join(data, 'PG_VERSION'))) return false;
  const initdb = requireProgram('initdb');
  if (asRoot()) await ownedDir(join(clusterDir, '..'), account);
  await ownedDir(clusterDir, account);
  const pwfile = join(clusterDir, '.initdb-password');
  await writeFile(pwfile, `${password}\n`, { mode: 0o600 });
  try {
    if (asRoot()) await chown(pwfile, account.uid, account.gid);
    await rm(data, { recursive: true, force: true });
    await run(
      initdb,
      [
        '-D',
        data,
        '--no-sync',
        '--no-instructions',
        '-U',
        role,
        `--pwfile=${pwfile}`,
        '--auth-host=scram-sha-256',
        '--auth-local=peer',
        '-E',
        'UTF8',
        '--locale=C',
      ],
      account,
      clusterDir,
    );
  } finally {
    await rm(pwfile, { force: true });
  }
  // Only 127.0.0.1, no socket file: nothing but TCP with the password reaches it.
  await appendFile(
    join(data, 'postgresql.conf'),
    "\n# trusted-ms lab\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\nmax_connections = 50\n",
  );
  return true;
}

/** The server's PID while its postmaster.pid exists. */
export async function serverPid(clusterDir: string): Promise<number | undefined> {
  try {
    const pid = Number(
      (await readFile(join(dataDirOf(clusterDir), 'postmaster.pid'), 'utf8')).split('\n')[0],
    );
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

/** Starts the server on 127.0.0.1:`port` and waits until it takes connections; returns its PID. */
export async function startCluster(clusterDir: string, account: OsAccount, port: number): Promise<number> {
  const pgCtl = requireProgram('pg_ctl');
  await run(
    pgCtl,
    [
      '-D',
      dataDirOf(clusterDir),
      '-l',
      serverLogOf(clusterDir),
      '-w',
      '-t',
      '30',
      '-o',
      `-p ${port}`,
      'start',
    ],
    account,
    clusterDir,
  );
  const pid = await serverPid(clusterDir);
  if (pid === undefined)
    throw new TrustedMsError('LAB_START_FAILED', `PostgreSQL in ${clusterDir} did not write its PID`);
  return pid;
}

/**
 * Stops the server; returns whether one was running. `fast` rolls open transactions back and
 * writes a checkpoint; `immediate` skips the checkpoint (crash recovery at the next start), for a
 * cluster about to be removed.
 */
export async function stopCluster(
  clusterDir: string,
  account: OsAccount,
  mode: 'fast' | 'immediate' = 'fast',
): Promise<boolean> {
  const pid = await serverPid(clusterDir);
  if (pid === undefined) return false;
  const pgCtl = requireProgram('pg_ctl');
  try {
    await run(
      pgCtl,
      ['-D', dataDirOf(clusterDir), '-m', mode, '-w', '-t', '30', 'stop'],
      account,
      clusterDir,
    );
  } catch {
    // pg_ctl gave up (or the postmaster.pid is stale): kill the PID only if it is this cluster's
    // postmaster, never another process that reused the number.
    if (!(await isPostmasterOf(pid, dataDirOf(clusterDir)))) return false;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      return false;
    }
  }
  return true;
}

async function isPostmasterOf(pid: number, dataDir: string): Promise<boolean> {
  try {
    const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
    return argv.includes(dataDir);
  } catch {
    return false;
  }
}

/** Removes the cluster's folder (the server must be stopped). */
export async function removeCluster(clusterDir: string): Promise<void> {
  await rm(clusterDir, { recursive: true, force: true });
}
