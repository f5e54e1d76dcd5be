import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runAttacks } from '../../../src/attacks/runner.js';
import type { Scenario, Verdict } from '../../../src/attacks/types.js';
import { labDown } from '../../../src/lab/down.js';
import { labUp } from '../../../src/lab/up.js';

/**
 * A scripted scenario, a fake by name: its verdicts come from `script` in turn. A real scenario
 * cannot be made inconclusive on demand (that takes a starved attacker: dos-busy.integration.test.ts),
 * so this is how the runner's handling of an inconclusive run is shown both ways.
 */
function scripted(id: string, script: Verdict[]): Scenario & { runs: number } {
  const s: Scenario & { runs: number } = {
    id,
    title: `scripted ${id}`,
    paperAttack: 3 as const,
    technique: 'T1499',
    description: 'a fake scenario whose verdicts are scripted',
    evidence: 'none: scripted',
    expected: { none: 'blocked', paper: 'blocked', trusted: 'blocked' } as const,
    runs: 0,
    async detonate() {
      s.runs += 1;
    },
    judge(ctx) {
      const v: Verdict = script[s.runs - 1] ?? 'blocked';
      if (v === 'inconclusive') ctx.evidence.inconclusive = `scripted run ${s.runs}`;
      return v;
    },
  };
  return s;
}

describe.sequential('the runner and an inconclusive run', () => {
  let dir: string;
  let home: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tms-attack-rerun-'));
    home = join(dir, 'home');
    await labUp({ home, posture: 'none', services: 1 });
  }, 120_000);
  afterAll(async () => {
    await labDown(home).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it('runs an inconclusive scenario once more and reports the second run, with the first reason', async () => {
    const once = scripted('fake.inconclusive-once', ['inconclusive', 'blocked']);
    const always = scripted('fake.inconclusive-always', ['inconclusive', 'inconclusive', 'blocked']);
    const conclusive = scripted('fake.conclusive', ['blocked', 'inconclusive']);
    const progress: string[] = [];
    const report = await runAttacks({
      scenarios: [once, always, conclusive],
      postures: ['none'],
      home,
      onProgress: (l) => progress.push(l),
    });
    expect([once.runs, always.runs, conclusive.runs]).toEqual([2, 2, 1]);
    expect(report.results.map((r) => [r.id, r.outcome, r.passed, r.rerunAfter])).toEqual([
      ['fake.inconclusive-once', 'blocked', true, 'scripted run 1'],
      ['fake.inconclusive-always', 'inconclusive', false, 'scripted run 1'],
      ['fake.conclusive', 'blocked', true, undefined],
    ]);
    expect(report.results[1]?.evidence.inconclusive).toBe('scripted run 2');
    // an inconclusive cell is not a pass: the run is not ok
    expect(report.summary).toEqual({ total: 3, passed: 2, failed: 1 });
    expect(report.ok).toBe(false);
    expect(progress).toContain(
      'none: fake.inconclusive-once inconclusive (scripted run 1), running it once more',
    );
  }, 60_000);
});
