/**
 * `npm run bench`: what each posture costs, measured side by side in one run. Three process labs
 * (none, paper, trusted) run at once; CLIENTS virtual users per lab log in and send the default mix,
 * the postures interleaved round by round (A B C, B C A, C A B ...) so machine drift hits all alike:
 * a closed-loop phase (throughput) and a constant-rate phase at a quarter of the slowest posture's warm-up
 * throughput (latency without queueing, from the intended send time). Plus the micro-figures: the
 * login's parts, the gateway's per-request check, attestation of all services, `lab up`, the CLI's
 * cold start. Writes bench/results.json, bench/results.md, bench/latency.svg and the README table.
 * Every client logs in once per lab, before the rounds (the login figures come from there): the
 * rounds measure requests with warm tickets and connections, while what a new session costs is
 * reported as logins/s, login latency, and the micro-figures. Numbers only: nothing here asserts a timing. Environment: BENCH_CLIENTS (150), BENCH_ROUNDS (3),
 * BENCH_SECONDS (5 per phase), BENCH_SERVICES (20).
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Client } from 'undici';
import type { Session } from '../src/client/session.js';
import type { Posture } from '../src/defences/posture.js';
import { edgeConnectFor } from '../src/kernel/edge-client.js';
import type { LabState } from '../src/kernel/lab-state.js';
import { labTopology } from '../src/kernel/topology.js';
import { verifyServices } from '../src/lab/attest.js';
import { labDown } from '../src/lab/down.js';
import { labUp } from '../src/lab/up.js';
import { type Histogram, latencyHistogram, percentileCurve } from '../src/load/histogram.js';
import { defaultMix, type Mix } from '../src/load/mix.js';
import {
  closeClients,
  type LoginFigures,
  loginAll,
  openClients,
  type RequestFigures,
  sendRequests,
} from '../src/load/run.js';
import { createVirtualUsers, removeVirtualUsers, type VirtualUser } from '../src/load/users.js';
import type { Role } from '../src/policy/types.js';
import { openLabStore } from '../src/store/open.js';
import { openUserAdmin } from '../src/users/admin.js';
import { CHART_PERCENTILES, latencyChartSvg } from './chart.js';
import { cliColdStartMs, median, microFigures, sequentialLoginMs } from './micro.js';

const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 150);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const PHASE_MS = Number(process.env.BENCH_SECONDS ?? 5) * 1000;
const SERVICES = Number(process.env.BENCH_SERVICES ?? 20);
const RATE_FRACTION = 0.25;
const POSTURES: readonly Posture[] = ['none', 'paper', 'trusted'];
const COLORS: Record<Posture, string> = { none: '#888888', paper: '#d95f02', trusted: '#1b9e77' };

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const benchDir = join(root, 'bench');
const log = (line: string): void => void process.stderr.write(`${line}\n`);
const round1 = (x: number): number => Math.round(x * 10) / 10;
const round3 = (x: number): number => Math.round(x * 1000) / 1000;

interface Lab {
  posture: Posture;
  home: string;
  state: LabState;
  upMs: number;
  users: VirtualUser[];
  clients: Client[];
  sessions: (Session | undefined)[];
  roles: Record<string, Role>;
  mix: Mix;
  closedHist: Histogram;
  rateHist: Histogram;
}

interface RoundResult {
  round: number;
  order: Posture[];
  postures: Record<
    string,
    {
      logins: LoginFigures;
      closed: Omit<RequestFigures, 'histogram'>;
      rate: Omit<RequestFigures, 'histogram'>;
      /** CPU time of all the lab's processes per request in the closed-loop phase (Linux) */
      labCpuUsPerRequest: number | null;
    }
  >;
}

const strip = ({ histogram: _h, ...rest }: RequestFigures): Omit<RequestFigures, 'histogram'> => rest;

/**
 * CPU ms used so far by the lab's processes (/proc, Linux), or null elsewhere. Unlike req/s on a
 * machine shared with other work, CPU per request hardly depends on what else runs.
 */
function labCpuMs(state: LabState): number | null {
  if (process.platform !== 'linux') return null;
  let total = 0;
  for (const p of state.parts) {
    if (p.pid === undefined) continue;
    try {
      const fields = readFileSync(`/proc/${p.pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
      total += ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // clock ticks at USER_HZ 100
    } catch {
      return null;
    }
  }
  return total;
}

async function bringUp(posture: Posture, base: string): Promise<Lab> {
  const home = join(base, posture);
  log(`lab up ${posture} (${SERVICES} services)`);
  const up = await labUp({ home, posture, services: SERVICES });
  const services = labTopology().services.filter((s) =>
    up.state.parts.some((p) => p.kind === 'service' && p.name === s.name),
  );
  const roles = (await openLabStore(home).data()).roles;
  const mix = defaultMix(services, roles);
  log(`  up in ${(up.durationMs / 1000).toFixed(1)} s; creating ${CLIENTS} users with their own key pairs`);
  const users = await createVirtualUsers(await openUserAdmin(home), {
    count: CLIENTS,
    roles: mix.roles,
    login: up.state.defences.login,
  });
  return {
    posture,
    home,
    state: up.state,
    upMs: up.durationMs,
    users,
    clients: openClients(up.state.gatewayUrl, CLIENTS, undefined, true, edgeConnectFor(up.state)),
    sessions: [],
    roles,
    mix,
    closedHist: latencyHistogram(),
    rateHist: latencyHistogram(),
  };
}

function loadOpts(lab: Lab) {
  return {
    lab: lab.state,
    users: lab.users,
    roles: lab.roles,
    services: labTopology().services.filter((s) => lab.mix.requests.some((e) => e.service === s.name)),
    mix: lab.mix,
  };
}

async function loginPhase(lab: Lab): Promise<LoginFigures> {
  const { sessions, logins } = await loginAll(loadOpts(lab), lab.clients);
  lab.sessions = sessions;
  return logins;
}

async function sequentialLabLoginMs(
  lab: Lab,
  n: number,
): Promise<{ loginMs: number; withoutHashMs: number }> {
  return sequentialLoginMs(lab.state, lab.users[0] as VirtualUser, lab.clients[0] as Client, n);
}

async function main(): Promise<void> {
  const started = Date.now();
  const machine = {
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    loadAverageAtStart: loadavg().map(round1),
  };
  log(`bench: ${CLIENTS} clients, ${ROUNDS} rounds, ${PHASE_MS / 1000} s per phase, ${SERVICES} services`);
  log(
    `machine: ${machine.cpus} × ${machine.cpuModel}, node ${machine.node}, load ${machine.loadAverageAtStart.join(' ')}`,
  );

  log('micro-figures');
  const micro = await microFigures();
  log('CLI cold start');
  const cliVersionMs = await cliColdStartMs(['--version'], 9);

  const base = await mkdtemp(join(tmpdir(), 'tms-bench-'));
  const labs: Lab[] = [];
  try {
    for (const posture of POSTURES) labs.push(await bringUp(posture, base));
    const byPosture = (p: Posture): Lab => labs.find((l) => l.posture === p) as Lab;

    log('logins, then warm-up: every lab takes a short closed loop');
    const warm: Record<string, number> = {};
    const loginsOf: Record<string, LoginFigures> = {};
    for (const lab of labs) {
      loginsOf[lab.posture] = await loginPhase(lab);
      warm[lab.posture] = (
        await sendRequests({ ...loadOpts(lab), durationMs: 3000 }, lab.clients, lab.sessions)
      ).reqPerSec;
      log(`  ${lab.posture}: ${JSON.stringify(loginsOf[lab.posture])}`);
    }
    const rate = Math.max(10, Math.round(RATE_FRACTION * Math.min(...Object.values(warm))));
    log(`  warm-up req/s ${JSON.stringify(warm)}; constant-rate phase at ${rate} req/s`);

    const rounds: RoundResult[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const order = POSTURES.map((_, i) => POSTURES[(i + r) % POSTURES.length] as Posture);
      const result: RoundResult = { round: r + 1, order, postures: {} };
      for (const p of order) {
        const lab = byPosture(p);
        const logins = loginsOf[p] as LoginFigures;
        const cpu0 = labCpuMs(lab.state);
        const closed = await sendRequests(
          { ...loadOpts(lab), durationMs: PHASE_MS },
          lab.clients,
          lab.sessions,
        );
        const cpu1 = labCpuMs(lab.state);
        const labCpuUsPerRequest =
          cpu0 === null || cpu1 === null || closed.requests === 0
            ? null
            : Math.round(((cpu1 - cpu0) * 1000) / closed.requests);
        const fixed = await sendRequests(
          { ...loadOpts(lab), durationMs: PHASE_MS, rate },
          lab.clients,
          lab.sessions,
        );
        lab.closedHist.add(closed.histogram);
        lab.rateHist.add(fixed.histogram);
        result.postures[p] = { logins, closed: strip(closed), rate: strip(fixed), labCpuUsPerRequest };
        log(
          `  round ${r + 1} ${p}: closed ${closed.reqPerSec} req/s p50 ${closed.latencyMs.p50} ms, lab CPU ${labCpuUsPerRequest} µs/req; ${rate} req/s p50 ${fixed.latencyMs.p50} ms p99 ${fixed.latencyMs.p99} ms; errors ${closed.requests - closed.ok + fixed.requests - fixed.ok}`,
        );
      }
      rounds.push(result);
    }

    log('sequential logins, attestation');
    const trusted = byPosture('trusted');
    const { loginMs: loginTrustedMs, withoutHashMs: loginTrustedNoHashMs } = await sequentialLabLoginMs(
      trusted,
      15,
    );
    const { loginMs: loginPaperMs } = await sequentialLabLoginMs(byPosture('paper'), 15);
    const attest: number[] = [];
    for (let i = 0; i < 5; i++) {
      const v = await verifyServices(trusted.home, 'all');
      if (v.services.some((s) => s.state !== 'trusted'))
        throw new Error('attestation failed during the bench');
      attest.push(v.durationMs);
    }

    // ---- figures
    const per = (p: Posture, f: (x: RoundResult['postures'][string]) => number): number[] =>
      rounds.map((r) => f(r.postures[p] as RoundResult['postures'][string]));
    const ratio = (p: Posture): number =>
      median(
        rounds.map((r) => (r.postures[p]?.closed.reqPerSec ?? 0) / (r.postures.none?.closed.reqPerSec ?? 1)),
      );
    const added = (p: Posture, pct: 'p50' | 'p99'): number =>
      median(
        rounds.map(
          (r) => (r.postures[p]?.rate.latencyMs[pct] ?? 0) - (r.postures.none?.rate.latencyMs[pct] ?? 0),
        ),
      );
    const summary = Object.fromEntries(
      POSTURES.map((p) => [
        p,
        {
          reqPerSec: Math.round(median(per(p, (x) => x.closed.reqPerSec))),
          labCpuUsPerRequest: Math.round(median(per(p, (x) => x.labCpuUsPerRequest ?? 0))),
          cpuRatioToNone: round3(
            median(
              rounds.map(
                (r) => (r.postures.none?.labCpuUsPerRequest ?? 0) / (r.postures[p]?.labCpuUsPerRequest ?? 1),
              ),
            ),
          ),
          closedP50Ms: round3(median(per(p, (x) => x.closed.latencyMs.p50))),
          rateP50Ms: round3(median(per(p, (x) => x.rate.latencyMs.p50))),
          rateP99Ms: round3(median(per(p, (x) => x.rate.latencyMs.p99))),
          rateP999Ms: round3(median(per(p, (x) => x.rate.latencyMs.p999))),
          errors: rounds.reduce(
            (a, r) =>
              a +
              (r.postures[p]?.closed.requests ?? 0) -
              (r.postures[p]?.closed.ok ?? 0) +
              (r.postures[p]?.rate.requests ?? 0) -
              (r.postures[p]?.rate.ok ?? 0),
            0,
          ),
          loginsPerSec: round1(median(per(p, (x) => x.logins.perSecond))),
          ratioToNone: round3(ratio(p)),
          addedP50Ms: round3(added(p, 'p50')),
          addedP99Ms: round3(added(p, 'p99')),
          labUpMs: byPosture(p).upMs,
        },
      ]),
    );
    const targets = [
      target(
        'req/s trusted ÷ none at 150 clients',
        summary.trusted?.ratioToNone ?? 0,
        '≥ 0.85',
        (v) => v >= 0.85,
      ),
      target(
        'added p50, trusted − none (ms, at a fixed rate)',
        summary.trusted?.addedP50Ms ?? 0,
        '< 0.5',
        (v) => v < 0.5,
      ),
      target(
        'login excluding the password hash (ms, p50 of login − a hash beside it)',
        round3(loginTrustedNoHashMs),
        '< 2',
        (v) => v < 2,
      ),
      target(
        `attestation of ${SERVICES} services (ms, median)`,
        round1(median(attest)),
        '< 200',
        (v) => v < 200,
      ),
      target(`lab up of ${SERVICES} services, trusted (s)`, round3(trusted.upMs / 1000), '< 5', (v) => v < 5),
      target('CLI cold start --version (ms, median)', round1(cliVersionMs), '< 300', (v) => v < 300),
    ];
    const results = {
      at: new Date(started).toISOString(),
      durationS: 0,
      machine: { ...machine, loadAverageAtEnd: loadavg().map(round1) },
      settings: { clients: CLIENTS, rounds: ROUNDS, phaseSeconds: PHASE_MS / 1000, services: SERVICES, rate },
      summary,
      targets,
      micro: {
        ...micro,
        loginSequentialMs: { trusted: round3(loginTrustedMs), paper: round3(loginPaperMs) },
        attestationMs: attest.map(round1),
        labUpMs: Object.fromEntries(labs.map((l) => [l.posture, l.upMs])),
        cliVersionMs: round1(cliVersionMs),
      },
      warmupReqPerSec: warm,
      rounds,
    };
    results.durationS = Math.round((Date.now() - started) / 1000);
    const md = markdown(results);
    await writeFile(join(benchDir, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
    await writeFile(join(benchDir, 'results.md'), md);
    await writeFile(
      join(benchDir, 'latency.svg'),
      latencyChartSvg(
        `Latency at ${rate} req/s, ${CLIENTS} clients, ${SERVICES} services (all rounds)`,
        labs.map((l) => ({
          label: l.posture,
          color: COLORS[l.posture],
          points: percentileCurve(l.rateHist, CHART_PERCENTILES),
        })),
      ),
    );
    await updateReadme(md);
    process.stdout.write(md);
    log(
      `wrote bench/results.json, bench/results.md, bench/latency.svg and the README table in ${results.durationS} s`,
    );
  } finally {
    for (const lab of labs) {
      await closeClients(lab.clients);
      const admin = await openUserAdmin(lab.home).catch(() => undefined);
      if (admin)
        await removeVirtualUsers(
          admin,
          lab.users.map((u) => u.name),
        ).catch(() => 0);
      await labDown(lab.home).catch(() => undefined);
    }
    await rm(base, { recursive: true, force: true });
  }
}

function target(name: string, value: number, goal: string, pass: (v: number) => boolean) {
  return { name, value, goal, pass: pass(value) };
}

type Results = {
  at: string;
  durationS: number;
  machine: {
    node: string;
    cpus: number;
    cpuModel: string;
    memoryGiB: number;
    loadAverageAtStart: number[];
    loadAverageAtEnd: number[];
  };
  settings: { clients: number; rounds: number; phaseSeconds: number; services: number; rate: number };
  summary: Record<string, Record<string, number>>;
  targets: ReturnType<typeof target>[];
  micro: Awaited<ReturnType<typeof microFigures>> & {
    loginSequentialMs: { trusted: number; paper: number };
    attestationMs: number[];
    labUpMs: Record<string, number>;
    cliVersionMs: number;
  };
};

function markdown(r: Results): string {
  const s = r.summary;
  const row = (p: string): string => {
    const x = s[p] as Record<string, number>;
    return `| ${p} | ${x.reqPerSec} | ${x.ratioToNone?.toFixed(2)} | ${x.labCpuUsPerRequest} | ${x.cpuRatioToNone?.toFixed(2)} | ${x.rateP50Ms} | ${x.rateP99Ms} | ${x.rateP999Ms} | ${x.addedP50Ms} | ${x.loginsPerSec} | ${x.errors} | ${((x.labUpMs ?? 0) / 1000).toFixed(1)} |`;
  };
  const m = r.micro;
  return [
    `Measured ${r.at.slice(0, 16).replace('T', ' ')} UTC on ${r.machine.cpus} × ${r.machine.cpuModel}, ${r.machine.memoryGiB} GiB, Node ${r.machine.node}; load average ${r.machine.loadAverageAtStart.join(' ')} at the start, ${r.machine.loadAverageAtEnd.join(' ')} at the end. ${r.settings.clients} clients per posture, ${r.settings.services} process services, ${r.settings.rounds} interleaved rounds of ${r.settings.phaseSeconds} s closed loop + ${r.settings.phaseSeconds} s at ${r.settings.rate} req/s (medians of the rounds), every client logged in once before the rounds (logins/s from that phase, 8 handshakes in flight); ${r.durationS} s in all. Re-run: \`npm run bench\`.`,
    '',
    "| posture | req/s (closed loop) | ÷ none | lab CPU µs/req | none's CPU ÷ this | p50 ms at fixed rate | p99 ms | p99.9 ms | added p50 ms | logins/s | errors | lab up s |",
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...['none', 'paper', 'trusted'].map(row),
    '',
    '| target | measured | goal | |',
    '| --- | ---: | --- | --- |',
    ...r.targets.map((t) => `| ${t.name} | ${t.value} | ${t.goal} | ${t.pass ? 'pass' : 'FAIL'} |`),
    '',
    "Lab CPU µs/req: CPU time of all the lab's processes (gateway, services, security service, supervisor) per request in the closed-loop phases, from /proc: unlike req/s it hardly moves when other work shares the machine, so none's CPU ÷ this estimates the throughput ratio on an otherwise idle machine.",
    '',
    `Login, per handshake: password hash (scrypt) ${m.login.passwordHashMs.toFixed(1)} ms; signature verify Ed25519 ${m.login.signatureVerifyUs.ed25519.toFixed(0)} µs, RSA-PSS-2048 ${m.login.signatureVerifyUs.rsaPss2048.toFixed(0)} µs, paper RSA-2048 decrypt ${m.login.signatureVerifyUs.paperRsa2048.toFixed(0)} µs; ticket issue ${m.login.ticketIssueUs.toFixed(0)} µs; X25519 exchange ${m.login.sessionKeyExchangeUs.toFixed(0)} µs. Whole login on an idle lab (sequential, p50): trusted ${m.loginSequentialMs.trusted.toFixed(1)} ms, paper ${m.loginSequentialMs.paper.toFixed(1)} ms.`,
    `Gateway, per trusted request: ${m.gateway.perRequestUs.toFixed(1)} µs (cached ticket ${m.gateway.ticketVerifyCachedUs.toFixed(2)} µs, proof ${m.gateway.proofVerifyUs.toFixed(1)} µs; a ticket's first check, Ed25519, ${m.gateway.ticketVerifyColdUs.toFixed(0)} µs).`,
    `Attestation of ${r.settings.services} services (measure from outside + report): ${m.attestationMs.join(', ')} ms. Lab up: ${Object.entries(
      m.labUpMs,
    )
      .map(([p, ms]) => `${p} ${(ms / 1000).toFixed(1)} s`)
      .join(', ')}. CLI \`--version\`: ${m.cliVersionMs} ms.`,
    '',
    '![latency distribution per posture](bench/latency.svg)',
    '',
  ].join('\n');
}

async function updateReadme(md: string): Promise<void> {
  const file = join(root, 'README.md');
  const text = await readFile(file, 'utf8');
  const start = '<!-- bench:start -->';
  const end = '<!-- bench:end -->';
  const i = text.indexOf(start);
  const j = text.indexOf(end);
  if (i < 0 || j < i) {
    log('README has no bench markers: table not copied there');
    return;
  }
  await writeFile(file, `${text.slice(0, i + start.length)}\n${md}${text.slice(j)}`);
}

await main();
