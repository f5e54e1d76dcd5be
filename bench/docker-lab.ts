/**
 * The lab on Docker, measured through the CLI a user runs (numbers only, no assertions):
 * the lab's images built cold (with --cold: the lab's own images are removed first) and cached,
 * then ROUNDS x (`lab up --runtime docker --services 20`, `service verify --all`, `docker stats`
 * per container, `ss -ltn` for the published ports, `lab down`), in a temporary home.
 * Run with an engine up: `npm run build && node dist/bench/docker-lab.js [--cold]`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { readLabState } from '../src/kernel/lab-state.js';
import { connectEngine, idempotent, LABEL } from '../src/lab/runtimes/docker/engine.js';
import { ensureImages } from '../src/lab/runtimes/docker/images.js';

const ROUNDS = 2;
const SERVICES = 20;
const runJs = fileURLToPath(new URL('../../bin/run.js', import.meta.url));

const docker = await connectEngine();
if (!docker) {
  console.error('no Docker engine answers: start dockerd first');
  process.exit(1);
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;

async function timed<T>(run: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const v = await run();
  return [v, performance.now() - t0];
}

async function cli(home: string, args: string[]): Promise<number> {
  const [r, ms] = await timed(() =>
    execa(process.execPath, [runJs, ...args, '--home', home], {
      reject: false,
      env: { NO_COLOR: '1' },
      timeout: 300_000,
    }),
  );
  if (r.exitCode !== 0) throw new Error(`${args.join(' ')} exited ${r.exitCode}: ${r.stderr}`);
  return ms;
}

/** Memory use per container, as `docker stats --no-stream` reports it, in MiB. */
function mib(usage: string): number {
  const m = /^([\d.]+)\s*([KMG]i?B)/.exec(usage);
  if (!m) return Number.NaN;
  const factor: Record<string, number> = { KiB: 1 / 1024, MiB: 1, GiB: 1024, kB: 1 / 1024, MB: 1, GB: 1024 };
  return Number(m[1]) * (factor[m[2] as string] ?? Number.NaN);
}

if (process.argv.includes('--cold')) {
  const images = await docker.listImages({ filters: { label: [LABEL.image] } });
  for (const i of images)
    for (const tag of i.RepoTags ?? []) await idempotent(() => docker.getImage(tag).remove());
}
const [cold, coldMs] = await timed(() => ensureImages(docker));
console.log(
  `images ${cold.built.length ? `built cold (${cold.built.join(', ')})` : 'were cached already'}: ${seconds(coldMs)}`,
);
const [, cachedMs] = await timed(() => ensureImages(docker));
console.log(`images cached (content hashes checked, nothing built): ${seconds(cachedMs)}`);

for (let round = 1; round <= ROUNDS; round++) {
  const dir = await mkdtemp(join(tmpdir(), 'tms-bench-docker-'));
  const home = join(dir, 'home');
  try {
    const upMs = await cli(home, [
      'lab',
      'up',
      '--runtime',
      'docker',
      '--services',
      String(SERVICES),
      '--json',
    ]);
    const state = await readLabState(home);
    if (!state) throw new Error('no lab state after lab up');
    const verifyMs = await cli(home, ['service', 'verify', '--all', '--json']);

    const stats = await execa('docker', [
      'stats',
      '--no-stream',
      '--format',
      '{{.Name}}\t{{.MemUsage}}',
      ...state.parts.filter((p) => p.containerId).map((p) => p.containerId as string),
    ]);
    const mem = stats.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const [name, usage] = l.split('\t') as [string, string];
        return { name: name.replace(`tms-${state.labId}-`, ''), mib: mib(usage) };
      })
      .sort((a, b) => a.mib - b.mib);
    const services = mem.filter((m) => state.parts.find((p) => p.name === m.name)?.kind === 'service');
    const median = services[Math.floor(services.length / 2)]?.mib ?? Number.NaN;
    const others = mem.filter((m) => !services.includes(m)).map((m) => `${m.name} ${m.mib.toFixed(1)}`);

    // Every listening socket on a port the lab published (gateway, security's admin port): its local
    // address should be 127.0.0.1, never 0.0.0.0 or [::].
    const ports = [...new Set([state.gatewayUrl, state.securityUrl].map((u) => new URL(u).port))];
    const ss = await execa('ss', ['-Hltn']);
    const listeners = ss.stdout
      .split('\n')
      .map((l) => l.trim().split(/\s+/)[3] ?? '')
      .filter((local) => ports.some((p) => local.endsWith(`:${p}`)));

    const downMs = await cli(home, ['lab', 'down', '--json']);
    console.log(
      `round ${round}: lab up (${SERVICES} services, cached images) ${seconds(upMs)}; service verify --all ${seconds(verifyMs)}; lab down ${seconds(downMs)}`,
    );
    console.log(
      `  memory (docker stats): services min ${services[0]?.mib.toFixed(1)} / median ${median.toFixed(1)} / max ${services.at(-1)?.mib.toFixed(1)} MiB (n=${services.length}); ${others.join(', ')} MiB`,
    );
    console.log(`  ss -ltn on the lab's published ports ${ports.join(', ')}: ${listeners.join('  ')}`);
  } finally {
    await execa(process.execPath, [runJs, 'lab', 'down', '--home', home], { reject: false });
    await rm(dir, { recursive: true, force: true });
  }
}
