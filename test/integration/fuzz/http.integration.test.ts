import { describe, expect, it } from 'vitest';
import { type FuzzReport, runHttpFuzz, summarize } from '../../fuzz/http-fuzz.js';
import { startFuzzLab } from '../../fuzz/lab-target.js';

/**
 * The short fuzz run of the normal suite (the long one is `npm run fuzz`): a few hundred generated
 * requests per endpoint group against a real process lab, over real sockets. Fails on any 5xx,
 * refusal without a known code, hang, dropped connection, or dead part. The seed is printed so a
 * failure can be replayed with FUZZ_SEED.
 */
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);

function expectClean(report: FuzzReport, minPerGroup: number): void {
  console.log(`${summarize(report)}\n  seed ${SEED}`);
  expect(
    report.violations.map((v) => `${v.kind} ${v.status ?? ''} [${v.group}] ${v.detail}\n${v.request}`),
  ).toEqual([]);
  expect(report.crashes).toEqual([]);
  for (const [group, n] of Object.entries(report.byGroup))
    expect(n, group).toBeGreaterThanOrEqual(minPerGroup);
}

describe('HTTP fuzzing of a running lab (short run)', () => {
  it('trusted: security service, gateway (forged tickets, alg none / HS256 confusion, spoiled proofs) and the services behind it', async () => {
    const { lab, target } = await startFuzzLab('trusted', 2);
    await using _lab = lab;
    const report = await runHttpFuzz(target, { runsPerGroup: 250, seed: SEED });
    expect(Object.keys(report.byGroup).sort()).toEqual(
      [
        'gateway.misc',
        'gateway.proofs',
        'gateway.routed',
        'gateway.tickets',
        'raw',
        'security.admin',
        'security.challenge',
        'security.misc',
        'security.verify',
      ].sort(),
    );
    expectClean(report, 150);
    // The routed group reached the services for real: some requests passed every check.
    expect(report.statuses['200'] ?? 0).toBeGreaterThan(0);
  }, 180_000);

  it('none: the sample services directly, with forged x-tms-* headers', async () => {
    const { lab, target } = await startFuzzLab('none', 2);
    await using _lab = lab;
    const report = await runHttpFuzz(target, { runsPerGroup: 150, seed: SEED });
    expect(report.byGroup['service.direct'] ?? 0).toBeGreaterThan(50);
    expectClean(report, 50);
  }, 180_000);
});
