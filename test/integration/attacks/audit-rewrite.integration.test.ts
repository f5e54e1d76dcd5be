import { describe, expect, it } from 'vitest';
import { runAttacks } from '../../../src/attacks/runner.js';
import { auditRewrite } from '../../../src/attacks/scenarios/audit.rewrite.js';
import { POSTURES } from '../../../src/defences/posture.js';

// The log needs no service: the smallest lab the runner starts.
const SERVICES = 2;

describe('audit.rewrite against real process labs', () => {
  it('the recomputed chain passes alone; only the signed checkpoints (audit:signed, trusted) catch it', async () => {
    const report = await runAttacks({
      scenarios: [auditRewrite],
      postures: POSTURES,
      variants: [
        ...POSTURES.map((posture) => ({ posture })),
        { posture: 'trusted', without: ['audit:signed'] },
      ],
      services: SERVICES,
      runtime: 'process',
    });
    for (const r of report.results)
      console.log(
        `${r.variant}: ${r.outcome}${r.rerunAfter ? ` (ran again after: ${r.rerunAfter})` : ''} ${JSON.stringify(r.evidence)}`,
      );
    expect(report.results.map((r) => [r.variant, r.outcome])).toEqual([
      ['none', 'succeeded'],
      ['paper', 'succeeded'],
      ['trusted', 'blocked'],
      ['trusted -audit:signed', 'succeeded'],
    ]);
    for (const r of report.results) {
      const [rewrite, check] = r.evidence.attempts;
      // the attack itself held everywhere: records removed, the chain verifies (a step, not a gain:
      // only a verify that passes is the attacker's data, so "got data" is on the second attempt)
      expect(rewrite?.code, r.variant).toBeUndefined();
      expect(rewrite?.gotData, r.variant).toBe(false);
      expect(check?.gotData, r.variant).toBe(r.outcome === 'succeeded');
      expect(r.evidence.measurements?.removed, r.variant).toBeGreaterThan(0);
      if (r.variant === 'trusted') {
        expect(check?.code).toMatch(/^AUDIT_(TAMPERED|TRUNCATED)$/);
      } else {
        expect(check?.note, r.variant).toMatch(/no audit key/);
      }
      expect(r.reverted, r.variant).toBe(true);
    }
  }, 300_000);
});
