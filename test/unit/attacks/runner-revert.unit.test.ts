import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { runScenarios, type ScenarioResult } from '../../../src/attacks/runner.js';
import type { LabUser, Scenario } from '../../../src/attacks/types.js';
import type { LabState } from '../../../src/kernel/lab-state.js';

/** Scenarios that touch no lab: what matters here is the runner's bookkeeping of reverts. */
function scenario(id: string, revert?: () => Promise<void>): Scenario {
  return {
    id,
    title: id,
    paperAttack: 5,
    technique: 'T0000',
    description: '',
    evidence: '',
    expected: { none: 'blocked', paper: 'blocked', trusted: 'blocked' },
    async detonate() {},
    judge: () => 'blocked',
    ...(revert ? { revert } : {}),
  };
}

const key = generateKeyPairSync('ed25519').privateKey;
const user = (name: string): LabUser => ({ name, role: 'admin', password: 'x', privateKey: key });
// an HTTP edge: nothing for the runner to trust
const lab = {
  labId: 'unit',
  posture: 'trusted',
  gatewayUrl: 'http://127.0.0.1:9',
  parts: [],
} as unknown as LabState;

describe('a revert that cannot restore the lab', () => {
  it('fails its own cell and reports every later scenario as not run on a changed lab', async () => {
    const ran: string[] = [];
    const results: ScenarioResult[] = [];
    await runScenarios(
      lab,
      { victim: user('v'), attacker: user('a') },
      {
        postures: ['trusted'],
        scenarios: [
          scenario('first'),
          scenario('breaks-the-lab', async () => {
            throw new Error('the engine would not remove container accounts');
          }),
          { ...scenario('after'), detonate: async () => void ran.push('after') },
        ],
      },
      results,
    );
    expect(results.map((r) => [r.id, r.outcome, r.passed])).toEqual([
      ['first', 'blocked', true],
      ['breaks-the-lab', 'blocked', false],
      ['after', 'error', false],
    ]);
    expect(results[1]?.revertError).toMatch(/would not remove container accounts/);
    expect(results[2]?.error?.code).toBe('LAB_NOT_RESTORED');
    expect(results[2]?.error?.message).toMatch(/revert of breaks-the-lab failed/);
    // Not judged at all: its detonation never ran.
    expect(ran).toEqual([]);
  });
});

describe('a scenario that exists on some runtimes only', () => {
  it('is not run on another, and the run says why; elsewhere it runs', async () => {
    const processOnly: Scenario = {
      ...scenario('process-only'),
      onlyOn: { runtimes: ['process'], why: 'no such path into a container' },
    };
    for (const runtime of ['docker', 'process'] as const) {
      const lines: string[] = [];
      const results: ScenarioResult[] = [];
      await runScenarios(
        { ...lab, runtime },
        { victim: user('v'), attacker: user('a') },
        {
          postures: ['trusted'],
          scenarios: [processOnly, scenario('everywhere')],
          onProgress: (l) => lines.push(l),
        },
        results,
      );
      if (runtime === 'docker') {
        expect(results.map((r) => r.id)).toEqual(['everywhere']);
        expect(lines).toContain(
          'trusted: process-only not run: not applicable on docker (no such path into a container)',
        );
      } else {
        expect(results.map((r) => r.id)).toEqual(['process-only', 'everywhere']);
      }
    }
  });
});
