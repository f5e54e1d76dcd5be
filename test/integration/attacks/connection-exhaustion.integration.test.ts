import { describe, expect, it } from 'vitest';
import { runAttacks } from '../../../src/attacks/runner.js';
import { connectionExhaustion } from '../../../src/attacks/scenarios/dos.connection-exhaustion.js';
import { CONNECTION_LIMITS } from '../../../src/defences/limits.js';
import { SERVER_LIMITS } from '../../../src/services/http.js';

/**
 * dos.connection-exhaustion (issue 15, item 4) on process labs: one address opens more sockets than
 * the gateway accepts at all and sends nothing. Without limits it holds every one and the victim's
 * new connections are reset; with limits:on it keeps its share (512) and the victim logs in.
 */
describe.runIf(process.platform === 'linux').sequential("one address holds the gateway's sockets", () => {
  it('succeeds in none and paper and is blocked in trusted, by the counts of sockets and logins', async () => {
    const report = await runAttacks({
      scenarios: [connectionExhaustion],
      postures: ['none', 'paper', 'trusted'],
      services: 2,
    });
    const by = Object.fromEntries(report.results.map((r) => [r.posture, r]));
    expect(
      report.results.map((r) => `${r.posture}:${r.outcome}:${r.passed}`),
      JSON.stringify(report.results.map((r) => [r.evidence.inconclusive, r.evidence.measurements])),
    ).toEqual(['none:succeeded:true', 'paper:succeeded:true', 'trusted:blocked:true']);
    for (const posture of ['none', 'paper'] as const) {
      const m = by[posture]?.evidence.measurements ?? {};
      // kept out at least once, and every other login got in (none failed otherwise)
      expect(m.victimLoginsRefusedAtConnection, posture).toBeGreaterThanOrEqual(1);
      expect((m.victimLoginsRefusedAtConnection ?? 0) + (m.victimLoginsOk ?? 0), posture).toBe(5);
      // most of the gateway's sockets held (Node closes silent ones after 10 s; the attacker opens
      // them again, so a batch may be on its way back at the moment it counts)
      expect(m.attackerHeldBeforeVictim, posture).toBeGreaterThan(SERVER_LIMITS.maxConnections / 2);
    }
    const trusted = by.trusted?.evidence.measurements ?? {};
    expect(trusted.victimLoginsOk).toBe(5);
    expect(trusted.victimLoginsRefusedAtConnection).toBe(0);
    expect(trusted.attackerOpened).toBeGreaterThan(SERVER_LIMITS.maxConnections);
    expect(trusted.attackerHeldBeforeVictim).toBeLessThanOrEqual(CONNECTION_LIMITS.perSource);
  }, 240_000);

  it('catches a broken defence: trusted without limits:on lets the attacker hold the gateway', async () => {
    const report = await runAttacks({
      scenarios: [connectionExhaustion],
      postures: ['trusted'],
      variants: [{ posture: 'trusted', without: ['limits:on'] }],
      services: 2,
    });
    expect(
      report.results.map((r) => `${r.variant}:${r.outcome}`),
      JSON.stringify(report.results.map((r) => [r.evidence.inconclusive, r.evidence.measurements])),
    ).toEqual(['trusted -limits:on:succeeded']);
  }, 240_000);
});
