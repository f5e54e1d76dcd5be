import { describe, expect, it } from 'vitest';
import { type AttackReport, runAttacks, type ScenarioResult } from '../../../src/attacks/runner.js';
import { swapAtRestart } from '../../../src/attacks/scenarios/malicious-service.swap-at-restart.js';
import { POSTURES } from '../../../src/defences/posture.js';

/*
 * malicious-service.swap-at-restart on process labs: the exfiltrating variant swapped into the
 * target's folder right after the measurement that precedes its start, then before a restart, put
 * back each time once it runs. Judged from what reached the attacker's sink after the victim's reads.
 */
describe.sequential('a service swapped for its restart and put back, against real labs', () => {
  let report: AttackReport;
  const result = (posture: string): ScenarioResult => {
    const r = report.results.find((x) => x.posture === posture);
    if (r === undefined) throw new Error(`no result in ${posture}`);
    return r;
  };
  const at = (r: ScenarioResult, what: RegExp, when: RegExp) =>
    r.evidence.attempts.find((a) => what.test(a.action) && when.test(a.action));
  const AFTER = /right after the measurement/;
  const BEFORE = /before the restart/;
  const IN_COPY = /inside the code copy/;

  it('succeeds in none only, each reverted', async () => {
    report = await runAttacks({ scenarios: [swapAtRestart], postures: POSTURES, services: 2 });
    const failures = report.results
      .filter((r) => !r.passed)
      .map((r) => `${r.posture}: ${r.outcome} ${r.error?.message ?? ''} ${r.revertError ?? ''}`);
    expect(failures).toEqual([]);
    expect(report.results.map((r) => [r.posture, r.outcome])).toEqual([
      ['none', 'succeeded'],
      ['paper', 'blocked'],
      ['trusted', 'blocked'],
    ]);
    expect(report.results.every((r) => r.reverted)).toBe(true);
  }, 240_000);

  it('never runs code swapped in after the measurement, in any posture: the copy was made before', () => {
    for (const posture of POSTURES) {
      const r = result(posture);
      expect(at(r, /victim reads/, AFTER), posture).toMatchObject({ status: 200 });
      expect(at(r, /sink/, AFTER), posture).toMatchObject({ gotData: false, note: 'nothing arrived' });
    }
  });

  it('runs code swapped in before the restart; paper and trusted refuse it, trusted after the put-back too', () => {
    expect(at(result('none'), /sink/, BEFORE)?.gotData).toBe(true);
    expect(at(result('none'), /victim reads/, BEFORE)?.status).toBe(200);
    for (const posture of ['paper', 'trusted']) {
      const r = result(posture);
      expect(at(r, /victim reads/, BEFORE), posture).toMatchObject({
        status: 503,
        code: 'SERVICE_UNTRUSTED',
      });
      expect(at(r, /sink/, BEFORE)?.gotData, posture).toBe(false);
    }
  });

  it('never runs code swapped inside the code copy as its process starts, in any posture: Node is handed the measured bytes', () => {
    for (const posture of POSTURES) {
      const r = result(posture);
      // Swapped in place (the copy named by the code's hash) before the process existed, and never run.
      expect(at(r, /program swapped into the code copy/, /./), posture).toMatchObject({
        target: expect.stringMatching(/\/lab\/run\/[0-9a-f]{64}\/service\.mjs$/),
        gotData: false,
        note: 'it did not run',
      });
      expect(at(r, /sink/, IN_COPY), posture).toMatchObject({ gotData: false, note: 'nothing arrived' });
    }
    for (const posture of ['none', 'trusted']) {
      expect(at(result(posture), /victim reads/, IN_COPY), posture).toMatchObject({ status: 200 });
    }
    // paper: the service's self-report hashes the copy on disk, which was swapped at that moment.
    expect(at(result('paper'), /victim reads/, IN_COPY)).toMatchObject({
      status: 503,
      code: 'SERVICE_UNTRUSTED',
    });
  });
});
