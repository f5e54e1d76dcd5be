import { describe, expect, it } from 'vitest';
import { type AttackReport, runAttacks } from '../../../src/attacks/runner.js';
import { edgeEavesdrop } from '../../../src/attacks/scenarios/mitm.edge-eavesdrop.js';
import { POSTURES } from '../../../src/defences/posture.js';

// The login needs no service: the smallest lab the runner starts.
const SERVICES = 2;

describe.sequential('mitm.edge-eavesdrop against real process labs', () => {
  let report: AttackReport;
  const result = (variant: string) => report.results.find((r) => r.variant === variant);

  it('reads the password in none and paper and in trusted without edge:tls; blocked in trusted', async () => {
    report = await runAttacks({
      scenarios: [edgeEavesdrop],
      postures: POSTURES,
      variants: [...POSTURES.map((posture) => ({ posture })), { posture: 'trusted', without: ['edge:tls'] }],
      services: SERVICES,
      runtime: 'process',
    });
    for (const r of report.results)
      console.log(`${r.variant}: ${r.outcome} ${JSON.stringify(r.evidence.attempts)}`);
    expect(report.results.map((r) => [r.variant, r.outcome])).toEqual([
      ['none', 'succeeded'],
      ['paper', 'succeeded'],
      ['trusted', 'blocked'],
      ['trusted -edge:tls', 'succeeded'],
    ]);
  }, 300_000);

  it('with HTTP at the edge the proxy read the password in plain HTTP, and the victim logged in none the wiser', () => {
    for (const variant of ['none', 'paper', 'trusted -edge:tls']) {
      const [relay] = result(variant)?.evidence.attempts ?? [];
      expect(relay?.gotData, variant).toBe(true);
      expect(relay?.note, variant).toMatch(/plain HTTP, the victim logged in/);
    }
  });

  it("with edge:tls the relay carried TLS only, and the victim refused the proxy holding the attacker's certificate", () => {
    const attempts = result('trusted')?.evidence.attempts ?? [];
    expect(attempts.every((a) => !a.gotData)).toBe(true);
    expect(attempts[0]?.note).toMatch(
      /[1-9]\d* connection\(s\), \d+ B up, \d+ B down, TLS, the victim logged in/,
    );
    const refused = attempts.find((a) => a.action.startsWith('the victim logs in through the proxy'));
    expect(refused?.code).toBe('EDGE_CERTIFICATE_UNTRUSTED');
  });
});
