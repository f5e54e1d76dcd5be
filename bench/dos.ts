/**
 * The measurements behind DOS_THRESHOLDS (src/attacks/dos.ts): runs dos.login-flood and
 * dos.request-flood ROUNDS times against a lab in each posture, plus `trusted` with its rate limits
 * switched off (the broken defence the thresholds must still catch), and prints each run's figures
 * and, per scenario and posture, the spread of the latency ratio the verdict rests on.
 * Run: `npm run bench:dos -- [rounds] [services] [scenario id|both] [process|docker]` (default 5
 * rounds, 3 services, both scenarios, process lab; on docker the attacker floods from a container of
 * its own on the lab's edge network). Numbers only, no assertions.
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DOS_THRESHOLDS } from '../src/attacks/dos.js';
import { ensureAttackUsers, runScenario } from '../src/attacks/runner.js';
import { loginFlood } from '../src/attacks/scenarios/dos.login-flood.js';
import { requestFlood } from '../src/attacks/scenarios/dos.request-flood.js';
import type { Posture } from '../src/defences/posture.js';
import type { Ablation } from '../src/defences/presets.js';
import { labDown } from '../src/lab/down.js';
import { chooseRuntime } from '../src/lab/runtimes/select.js';
import { labUp } from '../src/lab/up.js';

const ROUNDS = Number(process.argv[2] ?? 5);
const SERVICES = Number(process.argv[3] ?? 3);
const ONLY = process.argv[4] === 'both' ? undefined : process.argv[4];
const RUNTIME = process.argv[5] === 'docker' ? 'docker' : 'process';
const LABS: { name: string; posture: Posture; without?: Ablation[] }[] = [
  { name: 'none', posture: 'none' },
  { name: 'paper', posture: 'paper' },
  { name: 'trusted', posture: 'trusted' },
  { name: 'trusted, no limits', posture: 'trusted', without: ['limits:on'] },
];

const ratios = new Map<string, string[]>();
console.log(
  `thresholds: ${JSON.stringify(DOS_THRESHOLDS)}; ${ROUNDS} rounds, ${SERVICES} services, ${RUNTIME} lab`,
);
console.log(
  'lab | scenario | legit base p50/p95 ms ok | during p50/p95 ms ok | ratio p50/p95 | flood sent/429/s | verdict',
);
for (const l of LABS) {
  const dir = await mkdtemp(join(tmpdir(), 'tms-bench-dos-'));
  const home = join(dir, 'home');
  try {
    const users = await ensureAttackUsers(home, join(dir, 'keys'));
    const { state } = await labUp({
      home,
      posture: l.posture,
      services: SERVICES,
      runtime: (await chooseRuntime(RUNTIME)).runtime,
      ...(l.without ? { without: l.without } : {}),
    });
    for (let i = 0; i < ROUNDS; i++) {
      for (const s of [loginFlood, requestFlood].filter((x) => ONLY === undefined || x.id === ONLY)) {
        const r = await runScenario(s, state, users, 10_000);
        const m = r.evidence.measurements ?? {};
        const key = `${s.id} @ ${l.name}`;
        ratios.set(key, [...(ratios.get(key) ?? []), `${m.latencyRatioP50}/${m.latencyRatioP95}`]);
        console.log(
          [
            l.name,
            s.id,
            `${m.legitBaselineP50Ms}/${m.legitBaselineP95Ms} ${m.legitBaselineSuccessRate}`,
            `${m.legitDuringP50Ms}/${m.legitDuringP95Ms} ${m.legitDuringSuccessRate}`,
            `${m.latencyRatioP50}/${m.latencyRatioP95}`,
            `${m.floodSent}/${m.floodRefused429}/${m.floodPerSecond} from ${r.evidence.attempts[1]?.action.split(', from ')[1] ?? '?'}`,
            r.outcome + (r.error ? ` ${r.error.code}: ${r.error.message}` : ''),
          ].join(' | '),
        );
        if (process.env.BENCH_VERBOSE) console.log(`  flood: ${r.evidence.attempts[1]?.note}`);
      }
    }
  } finally {
    await labDown(home).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}
console.log('\nlatency ratios p50/p95 (during / max(baseline, floor)), in run order:');
for (const [key, xs] of ratios) console.log(`${key}: ${xs.join(', ')}`);
