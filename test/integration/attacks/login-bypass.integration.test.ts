import { describe, expect, it } from 'vitest';
import { runAttacks } from '../../../src/attacks/runner.js';
import { loginBypass } from '../../../src/attacks/scenarios/accounts.login-bypass.js';
import { POSTURES } from '../../../src/defences/posture.js';

// Logins need no service: the smallest lab the runner starts.
const SERVICES = 2;

describe('accounts.login-bypass against real process labs', () => {
  it('guesses are checked past the gateway in paper and without links:mtls, refused before any check otherwise', async () => {
    const report = await runAttacks({
      scenarios: [loginBypass],
      postures: POSTURES,
      variants: [
        ...POSTURES.map((posture) => ({ posture })),
        { posture: 'trusted', without: ['links:mtls'] },
      ],
      services: SERVICES,
    });
    const cell = (variant: string) => report.results.find((r) => r.variant === variant);
    for (const r of report.results) {
      console.log(
        `${r.variant}: ${r.outcome} ${r.evidence.attempts[0]?.code} ${JSON.stringify(r.evidence.measurements)}`,
      );
    }
    expect(report.results.filter((r) => !r.passed).map((r) => r.variant)).toEqual([]);
    // The attacker's gain is an unmetered password verdict: got exactly where the verdict says succeeded.
    for (const r of report.results) {
      expect(
        r.evidence.attempts.some((a) => a.gotData),
        r.variant,
      ).toBe(r.outcome === 'succeeded');
    }

    // trusted: the plain port refuses every step, so no guess reaches the password check.
    expect(cell('trusted')?.outcome).toBe('blocked');
    expect(cell('trusted')?.evidence.attempts[0]?.code).toBe('LOGIN_VIA_GATEWAY_ONLY x12');
    // Without links:mtls the same port checks every guess, with limits:on still in force there:
    // the gateway's meters (10 failed steps from an address) never saw them.
    const ablated = cell('trusted -links:mtls');
    expect(ablated?.outcome).toBe('succeeded');
    expect(ablated?.evidence.measurements?.checked_past_gateway).toBe(12);
    expect(cell('paper')?.evidence.measurements?.checked_past_gateway).toBe(12);
    // none: the security service has no login step of its own; its password check wants the lab token.
    expect(cell('none')?.outcome).toBe('blocked');
    expect(cell('none')?.evidence.attempts[0]?.code).toBe('ADMIN_TOKEN_INVALID x12');
  }, 300_000);
});
