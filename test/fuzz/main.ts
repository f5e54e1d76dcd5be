/**
 * The long fuzz run, `npm run fuzz`: the HTTP fuzz groups against a real process lab in each posture
 * (trusted, paper, none), then the CLI input parsers at the function level. Bounded in count
 * (FUZZ_REQUESTS, default 100,000 HTTP requests in all) and in time (FUZZ_MINUTES, default 15).
 * Prints counts, statuses, 5xx, crashes and the seed; exits 1 on any 5xx, contract violation or crash.
 */
import { execa } from 'execa';
import type { Posture } from '../../src/defences/posture.js';
import { type FuzzReport, runHttpFuzz, summarize } from './http-fuzz.js';
import { startFuzzLab } from './lab-target.js';

const TOTAL = Number(process.env.FUZZ_REQUESTS ?? 100_000);
const MINUTES = Number(process.env.FUZZ_MINUTES ?? 15);
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
const POSTURES: { posture: Posture; share: number }[] = [
  { posture: 'trusted', share: 0.5 },
  { posture: 'paper', share: 0.25 },
  { posture: 'none', share: 0.25 },
];

const started = performance.now();
const deadline = started + MINUTES * 60_000;
const reports: FuzzReport[] = [];
console.log(
  `fuzz: ${TOTAL} requests over ${POSTURES.map((p) => p.posture).join(', ')}, at most ${MINUTES} min, seed ${SEED}`,
);
for (const { posture, share } of POSTURES) {
  const { lab, target } = await startFuzzLab(posture, 2);
  try {
    // Requests per group so that this posture's share of the total is reached (the client skips a
    // few it cannot send, hence the 1.15).
    const groups = posture === 'trusted' ? 9 : 8;
    const runsPerGroup = Math.ceil(((TOTAL * share) / groups) * 1.15);
    let last = 0;
    let shown = 0;
    const report = await runHttpFuzz(target, {
      runsPerGroup,
      seed: SEED,
      concurrency: 6,
      timeBudgetMs: Math.max(10_000, (deadline - performance.now()) * share * 1.5),
      onProgress: (r) => {
        // Violations as they happen (a run cut short still shows what it found).
        for (const v of r.violations.slice(shown, 20)) {
          process.stderr.write(
            `  VIOLATION ${v.kind} ${v.status ?? ''} [${v.group}] ${v.detail.slice(0, 150)}\n    ${v.request.slice(0, 400)}\n`,
          );
        }
        shown = Math.max(shown, Math.min(r.violations.length, 20));
        if (r.requests - last >= 5000) {
          last = r.requests;
          process.stderr.write(`  ${posture}: ${r.requests} requests, ${r.violations.length} violations\n`);
        }
      },
    });
    reports.push(report);
    console.log(summarize(report));
  } finally {
    await lab[Symbol.asyncDispose]();
  }
}

console.log('fuzz: CLI input parsers (function level)');
const parsers = await execa('npx', ['vitest', 'run', 'test/unit/fuzz'], {
  reject: false,
  env: { FUZZ_PARSER_RUNS: process.env.FUZZ_PARSER_RUNS ?? '5000', FUZZ_SEED: String(SEED) },
  stdio: 'inherit',
});

const requests = reports.reduce((n, r) => n + r.requests, 0);
const fiveXx = reports.reduce((n, r) => n + r.violations.filter((v) => v.kind === '5xx').length, 0);
const violations = reports.reduce((n, r) => n + r.violations.length, 0);
const crashes = reports.reduce((n, r) => n + r.crashes.length, 0);
const seconds = (performance.now() - started) / 1000;
console.log(
  `\nfuzz total: ${requests} HTTP requests in ${seconds.toFixed(0)} s; 5xx ${fiveXx}; contract violations ${violations}; ` +
    `crashes ${crashes}; parser fuzz ${parsers.exitCode === 0 ? 'passed' : 'FAILED'}; seed ${SEED}`,
);
process.exitCode = fiveXx + violations + crashes > 0 || parsers.exitCode !== 0 ? 1 : 0;
