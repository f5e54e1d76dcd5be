import { describe, expect, it } from 'vitest';
import { type AttackReport, runAttacks } from '../../../src/attacks/runner.js';
import { adminTokenTheft } from '../../../src/attacks/scenarios/control-plane.admin-token-theft.js';
import { spoofedSecurity } from '../../../src/attacks/scenarios/control-plane.spoofed-security.js';
import { forgedConfirmation } from '../../../src/attacks/scenarios/revocation.forged-confirmation.js';
import { POSTURES } from '../../../src/defences/posture.js';

// customers and the accounts it calls: the control plane is the same with 2 services as with 20.
const SERVICES = 2;
const SCENARIOS = [adminTokenTheft, forgedConfirmation, spoofedSecurity];

describe.sequential('the control-plane scenarios (issue 13) against real process labs', () => {
  let report: AttackReport;

  it('give the documented verdict in every posture, and revert what they change', async () => {
    report = await runAttacks({
      scenarios: SCENARIOS,
      postures: POSTURES,
      services: SERVICES,
      runtime: 'process',
    });
    const failures = report.results
      .filter((r) => !r.passed || !r.reverted)
      .map((r) => `${r.id}@${r.posture}: ${r.outcome}${r.reverted ? '' : ` (revert: ${r.revertError})`}`);
    expect(failures).toEqual([]);
    expect(report.results).toHaveLength(SCENARIOS.length * POSTURES.length);
  }, 400_000);

  it('admin-token-theft: the lab token opens the admin API in none; nothing a service holds does in paper or trusted', () => {
    const at = (posture: string) =>
      report.results.find((r) => r.id === adminTokenTheft.id && r.posture === posture);
    expect(
      at('none')?.evidence.attempts.some((a) => a.gotData && a.status === 200 && /lab token/.test(a.action)),
    ).toBe(true);
    const paper = at('paper')?.evidence.attempts ?? [];
    expect(paper.map((a) => a.code)).toEqual(['ADMIN_TOKEN_INVALID', 'ADMIN_TOKEN_INVALID']);
    expect(paper.every((a) => /own credential/.test(a.action))).toBe(true);
    const trusted = at('trusted')?.evidence.attempts ?? [];
    // no file credential at all; its certificate finds no admin route on the control plane
    expect(trusted.map((a) => [a.status, a.code])).toEqual([[404, 'ROUTE_NOT_FOUND']]);
  });

  it('forged-confirmation: counted in none, not in paper or trusted, with the gateway held still', () => {
    for (const posture of POSTURES) {
      const r = report.results.find((x) => x.id === forgedConfirmation.id && x.posture === posture);
      const m = r?.evidence.measurements ?? {};
      expect(m.parts, posture).toBeGreaterThan(0);
      if (posture === 'none') expect(m.confirmed, posture).toBe(m.parts);
      else expect(m.confirmed, posture).toBeLessThan(m.parts as number);
    }
  });

  it('spoofed-security: the fake gets the lab token and un-revokes in none and paper; in trusted nothing, and the watchman reports it', () => {
    const at = (posture: string) =>
      report.results.find((r) => r.id === spoofedSecurity.id && r.posture === posture);
    const cliCall = (posture: string) =>
      at(posture)?.evidence.attempts.find((a) => /a CLI admin call/.test(a.action));
    for (const posture of ['none', 'paper']) {
      expect(at(posture)?.evidence.measurements?.labTokenSentToFake, posture).toBeGreaterThan(0);
      expect(at(posture)?.evidence.measurements?.impostorReported, posture).toBe(0);
      // the CLI's admin call went to the fake, which knows no such route
      expect(cliCall(posture)?.code, posture).toBe('ROUTE_NOT_FOUND');
    }
    const trusted = at('trusted');
    expect(trusted?.evidence.measurements).toMatchObject({
      requestsToFake: 0,
      labTokenSentToFake: 0,
      impostorReported: 1,
      watchmanReportsToFake: 0,
    });
    // the fake outlasted at least one of the watchman's measurement rounds (the red team's 6.8 s
    // scenario never saw one), and the CLI's admin call was refused, not sent to it
    expect(trusted?.evidence.measurements?.watchmanRounds).toBeGreaterThanOrEqual(1);
    expect(cliCall('trusted')?.code).toBe('SERVICE_UNAVAILABLE');
    const read = trusted?.evidence.attempts.find((a) => /with the fake in place/.test(a.action));
    expect([read?.status, read?.code]).toEqual([401, 'TICKET_REVOKED']);
    expect(read?.gotData).toBe(false);
  });
});
