import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SCENARIOS as ALL } from '../../../src/attacks/registry.js';
import { type AttackReport, runAttacks } from '../../../src/attacks/runner.js';
import { stolenTicket } from '../../../src/attacks/scenarios/masquerade.stolen-ticket.js';
import { POSTURES } from '../../../src/defences/posture.js';
import { labDown } from '../../../src/lab/down.js';
import { labUp } from '../../../src/lab/up.js';

// Two services (customers and the accounts it calls) are all the masquerade and privilege scenarios
// need: one small lab per posture keeps the whole file well under a minute. The other attacks have
// test files of their own (the account scenarios: accounts.integration.test.ts).
const SERVICES = 2;
const SCENARIOS = ALL.filter((s) => s.paperAttack <= 2 && !s.id.startsWith('accounts.'));

describe.sequential('the attack catalog against real labs', () => {
  let report: AttackReport;

  it('runs every built scenario in every posture, each lab brought up and taken down in turn', async () => {
    report = await runAttacks({ scenarios: SCENARIOS, postures: POSTURES, services: SERVICES });
    const failures = report.results.filter((r) => !r.passed).map((r) => `${r.id}@${r.posture}: ${r.outcome}`);
    expect(failures).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.results).toHaveLength(SCENARIOS.length * POSTURES.length);
    expect(report.postures.map((p) => [p.posture, p.lab])).toEqual(POSTURES.map((p) => [p, 'started']));
  }, 150_000);

  it('sees every attack succeed in none and be blocked in trusted, from evidence', () => {
    for (const s of SCENARIOS) {
      const none = report.results.find((r) => r.id === s.id && r.posture === 'none');
      const trusted = report.results.find((r) => r.id === s.id && r.posture === 'trusted');
      expect(none?.outcome, s.id).toBe('succeeded');
      expect(
        none?.evidence.attempts.some((a) => a.gotData && a.status === 200),
        s.id,
      ).toBe(true);
      expect(trusted?.outcome, s.id).toBe('blocked');
      expect(trusted?.evidence.attempts.length, s.id).toBeGreaterThan(0);
      expect(
        trusted?.evidence.attempts.every((a) => !a.gotData && (a.status ?? 0) !== 200),
        s.id,
      ).toBe(true);
    }
    // The paper's bearer ticket is the hole the trusted posture closes.
    const paper = report.results.find((r) => r.id === 'masquerade.stolen-ticket' && r.posture === 'paper');
    expect(paper?.outcome).toBe('succeeded');
    const trustedTicket = report.results.find(
      (r) => r.id === 'masquerade.stolen-ticket' && r.posture === 'trusted',
    );
    expect(trustedTicket?.evidence.attempts.map((a) => a.code)).toEqual(['PROOF_INVALID', 'PROOF_INVALID']);
  });

  it('catches a broken defence: with the proof check off, stolen-ticket in trusted fails', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tms-attack-broken-'));
    const home = join(dir, 'home');
    try {
      await labUp({ home, posture: 'trusted', services: SERVICES, without: ['request:bound'] });
      const broken = await runAttacks({ scenarios: [stolenTicket], postures: ['trusted'], home });
      expect(broken.postures[0]?.lab).toBe('running');
      expect(broken.results[0]).toMatchObject({
        id: 'masquerade.stolen-ticket',
        posture: 'trusted',
        expected: 'blocked',
        outcome: 'succeeded',
        passed: false,
      });
      expect(broken.ok).toBe(false);
      expect(broken.summary).toEqual({ total: 1, passed: 0, failed: 1 });
    } finally {
      await labDown(home);
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
