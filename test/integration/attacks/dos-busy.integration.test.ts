import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runAttacks, type ScenarioResult } from '../../../src/attacks/runner.js';
import { loginFlood } from '../../../src/attacks/scenarios/dos.login-flood.js';
import { requestFlood } from '../../../src/attacks/scenarios/dos.request-flood.js';
import { labDown } from '../../../src/lab/down.js';
import { labUp } from '../../../src/lab/up.js';
import { BusyLoops } from '../../support/busy-loops.js';

/*
 * The DoS verdicts on a busy machine (issue 12, item 7): the two floods in every posture, again and
 * again, while two busy loops of ours hold the two cores. A wrong verdict (blocked in none or
 * paper, succeeded in trusted) fails; an inconclusive first run that the runner ran again is fine,
 * and counted. TMS_DOS_BUSY_REPEAT sets how many times (default 1 in the suite; 5 for a report).
 */
const REPEAT = Math.max(1, Number.parseInt(process.env.TMS_DOS_BUSY_REPEAT ?? '1', 10) || 1);
const BUSY = 2;
const SERVICES = 3;
const DOS = [loginFlood, requestFlood];
// Spelt out rather than imported: where the posture list lives is moving (issue 12, item 4).
const POSTURES = ['none', 'paper', 'trusted'] as const;

describe.sequential(`the DoS verdicts with ${BUSY} busy loops on the cores, ${REPEAT} time(s)`, () => {
  let busy: BusyLoops;

  beforeAll(async () => {
    busy = await BusyLoops.start(BUSY);
  });

  afterAll(async () => {
    await busy.stop();
  });

  it(
    'gives no wrong verdict: none and paper succeeded, trusted blocked, or inconclusive and run again',
    async () => {
      const results: ScenarioResult[] = [];
      for (const posture of POSTURES) {
        // One lab per posture for all the repeats: the lab is the same, the machine stays busy.
        const dir = await mkdtemp(join(tmpdir(), `tms-dos-busy-${posture}-`));
        const home = join(dir, 'home');
        try {
          await labUp({ home, posture, services: SERVICES });
          for (let n = 0; n < REPEAT; n++) {
            const report = await runAttacks({ scenarios: DOS, postures: [posture], home });
            expect(report.postures[0]?.lab).toBe('running');
            results.push(...report.results);
          }
        } finally {
          await labDown(home).catch(() => undefined);
          await rm(dir, { recursive: true, force: true });
        }
      }
      const line = (r: ScenarioResult) =>
        `${r.id}@${r.posture}: ${r.outcome}${r.rerunAfter ? ` (after an inconclusive run: ${r.rerunAfter})` : ''}${r.evidence.inconclusive ? ` (${r.evidence.inconclusive})` : ''}${r.error ? ` (${r.error.code}: ${r.error.message})` : ''}`;
      const rerun = results.filter((r) => r.rerunAfter !== undefined);
      const stillInconclusive = results.filter((r) => r.outcome === 'inconclusive');
      // What happened, for the report: every cell with the figures its verdict rests on.
      console.log(
        [
          `DoS on a busy machine (${BUSY} busy loops${busy.ended.length ? `, ended by something else and started again: ${busy.ended.join(' ')}` : ''}): ${results.length} cells, ${results.filter((r) => r.passed).length} as expected, ${rerun.length} run twice, ${stillInconclusive.length} inconclusive twice`,
          ...results.map((r) => {
            const m = r.evidence.measurements ?? {};
            return `  ${line(r)} | deadline ${m.legitDeadlineMs} ms, missed during ${m.legitDuringMissedShare} after ${m.legitAfterMissedShare}, flood ${m.floodSendPerSecond}/s vs victim ${m.legitBaselinePerSecond}/s, 429 ${m.floodRefused429}, held back ${m.floodQueued}`;
          }),
        ].join('\n'),
      );

      // Still spinning: the runs above were made on a busy machine.
      expect(busy.spinning).toBe(BUSY);
      expect(results).toHaveLength(REPEAT * DOS.length * POSTURES.length);
      // The point: a verdict given is the right one.
      const wrong = results.filter((r) => r.outcome !== 'inconclusive' && !r.passed).map(line);
      expect(wrong).toEqual([]);
      // An inconclusive cell is not a pass: it may happen, but not as the rule (then the judge
      // would only be hiding the question). At most one cell in six stays inconclusive.
      expect(stillInconclusive.length, stillInconclusive.map(line).join('\n')).toBeLessThanOrEqual(
        Math.floor(results.length / 6),
      );
    },
    REPEAT * 600_000 + 120_000,
  );
});
