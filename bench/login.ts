/**
 * The login handshake alone, on one idle process lab (trusted, BENCH_SERVICES services, default 3):
 * sequential logins of one user, each next to one password hash so that the hash is subtracted at
 * the machine's load of that moment, plus the security service's CPU per login; the same service's
 * store cost in-process (bench/security-store.ts). And the CLI's cold start (`--version`, `--help`,
 * `user list`, `lab status`). Numbers only, nothing asserted. Run: `npm run bench:login`.
 * Environment: BENCH_LOGINS (60), BENCH_SERVICES (3), BENCH_CLI_RUNS (9), BENCH_WITHOUT (defences
 * to remove, comma-separated, e.g. `edge:tls` for the same logins over HTTP at the edge).
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { labelOf, parseAblations } from '../src/defences/presets.js';
import { edgeConnectFor } from '../src/kernel/edge-client.js';
import { labDown } from '../src/lab/down.js';
import { labUp } from '../src/lab/up.js';
import { closeClients, openClients } from '../src/load/run.js';
import { createVirtualUsers } from '../src/load/users.js';
import { openUserAdmin } from '../src/users/admin.js';
import { cliColdStartMs, sequentialLoginMs } from './micro.js';
import { formatSecurityStoreFigures, securityStoreFigures } from './security-store.js';

const LOGINS = Number(process.env.BENCH_LOGINS ?? 60);
const SERVICES = Number(process.env.BENCH_SERVICES ?? 3);
const CLI_RUNS = Number(process.env.BENCH_CLI_RUNS ?? 9);
const WITHOUT = parseAblations((process.env.BENCH_WITHOUT ?? '').split(',').filter(Boolean), 'trusted');
const log = (line: string): void => void process.stderr.write(`${line}\n`);

const loadStart = loadavg().map((x) => x.toFixed(2));
const base = await mkdtemp(join(tmpdir(), 'tms-bench-login-'));
const home = join(base, 'trusted');
try {
  log(`lab up ${labelOf('trusted', WITHOUT)} (${SERVICES} services)`);
  const up = await labUp({ home, posture: 'trusted', services: SERVICES, without: WITHOUT });
  try {
    const [user] = await createVirtualUsers(await openUserAdmin(home), {
      count: 1,
      roles: ['analyst'],
      login: up.state.defences.login,
    });
    if (user === undefined) throw new Error('no user made');
    const clients = openClients(up.state.gatewayUrl, 1, undefined, true, edgeConnectFor(up.state));
    try {
      const security = up.state.parts.find((p) => p.name === 'security')?.pid;
      const cpu0 = security === undefined ? undefined : cpuMsOf(security);
      const { loginMs, withoutHashMs, hashMs, verifyStepMs } = await sequentialLoginMs(
        up.state,
        user,
        clients[0],
        LOGINS,
      );
      const cpu1 = security === undefined ? undefined : cpuMsOf(security);
      const cpuPerLogin =
        cpu0 === undefined || cpu1 === undefined ? 'n/a' : ((cpu1 - cpu0) / LOGINS).toFixed(1);
      console.log(
        `login (${labelOf('trusted', WITHOUT)}, ${LOGINS} sequential, p50): whole ${loginMs.toFixed(2)} ms, password hash beside it ${hashMs.toFixed(2)} ms, excluding the hash ${withoutHashMs.toFixed(2)} ms (its second step, /auth/verify, ${verifyStepMs.toFixed(2)} ms); security service CPU ${cpuPerLogin} ms/login (incl. the hash)`,
      );
    } finally {
      await closeClients(clients);
    }
  } finally {
    await labDown(home);
  }
  console.log(formatSecurityStoreFigures(await securityStoreFigures(LOGINS)));
  for (const args of [
    ['--version'],
    ['--help'],
    ['user', 'list', '--home', home],
    ['lab', 'status', '--home', home],
  ]) {
    const ms = await cliColdStartMs(args, CLI_RUNS);
    console.log(
      `CLI cold start \`trusted-ms ${args.filter((a) => a !== home && a !== '--home').join(' ')}\`: ${ms.toFixed(0)} ms (median of ${CLI_RUNS})`,
    );
  }
} finally {
  await rm(base, { recursive: true, force: true });
}
console.log(
  `load average ${loadStart.join(' ')} at the start, ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')} at the end`,
);

/** CPU ms (user + system) a process has used so far (Linux /proc), or undefined elsewhere. */
function cpuMsOf(pid: number): number | undefined {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return undefined;
  }
}
