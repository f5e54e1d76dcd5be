import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type AttackReport, runAttacks, type ScenarioResult } from '../../../src/attacks/runner.js';
import { envInjection } from '../../../src/attacks/scenarios/attestation.env-injection.js';
import { POSTURES } from '../../../src/defences/posture.js';
import { readLabState } from '../../../src/kernel/lab-state.js';
import { listServices } from '../../../src/lab/attest.js';
import { labDown } from '../../../src/lab/down.js';
import { labUp } from '../../../src/lab/up.js';

// customers (the target) and accounts, which it calls.
const SERVICES = 2;

/*
 * attestation.env-injection on process labs: NODE_OPTIONS=--import=<the attacker's module> in the
 * target's launch, its code untouched. Judged both ways from evidence: the module's own answer
 * through the gateway, and whether it loaded at all.
 */
describe.sequential('code injected through the environment, against real labs', () => {
  let report: AttackReport;
  const result = (posture: string): ScenarioResult => {
    const r = report.results.find((x) => x.posture === posture);
    if (r === undefined) throw new Error(`no result in ${posture}`);
    return r;
  };
  const asks = (r: ScenarioResult) =>
    r.evidence.attempts.find((a) => /asks the injected module/.test(a.action));

  it('succeeds in none and paper and is blocked in trusted, each reverted', async () => {
    report = await runAttacks({ scenarios: [envInjection], postures: POSTURES, services: SERVICES });
    const failures = report.results
      .filter((r) => !r.passed)
      .map((r) => `${r.posture}: ${r.outcome} ${r.error?.message ?? ''} ${r.revertError ?? ''}`);
    expect(failures).toEqual([]);
    expect(report.results.map((r) => [r.posture, r.outcome])).toEqual([
      ['none', 'succeeded'],
      ['paper', 'succeeded'],
      ['trusted', 'blocked'],
    ]);
    expect(report.results.every((r) => r.reverted)).toBe(true);
  }, 240_000);

  it('loaded the module in every posture: trusted refused a service that runs it, not a failed injection', () => {
    for (const posture of POSTURES) {
      const r = result(posture);
      expect(r.evidence.measurements?.implantLoaded, posture).toBe(1);
      expect(r.evidence.attempts[0]?.note, posture).toMatch(/^it ran in pid \d+$/);
    }
    for (const posture of ['none', 'paper']) {
      expect(asks(result(posture)), posture).toMatchObject({ status: 200, gotData: true });
    }
    expect(asks(result('trusted'))).toMatchObject({ status: 503, code: 'SERVICE_UNTRUSTED', gotData: false });
  });

  it('with the launch not attested (trusted less attestation:measured), the injection succeeds', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tms-inject-broken-'));
    const home = join(dir, 'home');
    try {
      await labUp({ home, posture: 'trusted', services: SERVICES, without: ['attestation:measured'] });
      const broken = await runAttacks({ scenarios: [envInjection], postures: ['trusted'], home });
      expect(broken.results[0]).toMatchObject({ outcome: 'succeeded', passed: false, reverted: true });
      expect(broken.results[0]?.evidence.attempts.some((a) => a.gotData)).toBe(true);
    } finally {
      await labDown(home);
      await rm(dir, { recursive: true, force: true });
    }
  }, 90_000);

  it('leaves a running trusted lab as it was: no pass-through, the same launch, every service trusted', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tms-inject-inplace-'));
    const home = join(dir, 'home');
    try {
      await labUp({ home, posture: 'trusted', services: SERVICES });
      const before = (await readLabState(home))?.parts.find((p) => p.name === 'customers');
      const run = await runAttacks({ scenarios: [envInjection], postures: ['trusted'], home });
      expect(run.ok).toBe(true);
      const after = (await readLabState(home))?.parts.find((p) => p.name === 'customers');
      expect(after?.env).toBeUndefined();
      expect(after?.manifest?.env.NODE_OPTIONS).toBeUndefined();
      expect(after?.manifest).toEqual(before?.manifest);
      expect(after?.pid).not.toBe(before?.pid);
      expect((await listServices(home)).map((s) => s.state)).toEqual(['trusted', 'trusted']);
    } finally {
      await labDown(home);
      await rm(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
