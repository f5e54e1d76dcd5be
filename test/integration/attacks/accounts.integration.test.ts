import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { attackerClient } from '../../../src/attacks/http.js';
import { tryPassword } from '../../../src/attacks/password-attempt.js';
import { type AttackReport, runAttacks } from '../../../src/attacks/runner.js';
import { enumeration } from '../../../src/attacks/scenarios/accounts.enumeration.js';
import { lockoutDos } from '../../../src/attacks/scenarios/accounts.lockout-dos.js';
import { POSTURES } from '../../../src/defences/posture.js';
import { readLabState } from '../../../src/kernel/lab-state.js';
import { ProcessRuntime } from '../../../src/lab/runtimes/process.js';
import { DEFAULT_BACKOFF } from '../../../src/lab/supervisor/backoff.js';
import { startLab } from '../../support/lab.js';
import { partNamed, waitFor } from '../hardening/wait.js';

// Logins need no service: the smallest lab the runner starts.
const SERVICES = 2;
const ACCOUNTS = [lockoutDos, enumeration];

describe.sequential('the account scenarios against real process labs', () => {
  let report: AttackReport;
  const result = (id: string, posture: string) =>
    report.results.find((r) => r.id === id && r.posture === posture && r.without === undefined);

  it('runs both in every posture and in trusted without limits:on, matching their expectations', async () => {
    report = await runAttacks({
      scenarios: ACCOUNTS,
      postures: POSTURES,
      variants: [...POSTURES.map((posture) => ({ posture })), { posture: 'trusted', without: ['limits:on'] }],
      services: SERVICES,
    });
    const failures = report.results
      .filter((r) => !r.passed)
      .map((r) => `${r.id}@${r.variant}: ${r.outcome} ${r.evidence.inconclusive ?? r.error?.message ?? ''}`);
    for (const r of report.results) {
      console.log(`${r.id}@${r.variant}: ${r.outcome} ${JSON.stringify(r.evidence.measurements ?? {})}`);
    }
    expect(failures).toEqual([]);
  }, 300_000);

  it('enumeration: the timing tells bcrypt users apart without limits:on, and nothing with it', () => {
    for (const posture of ['none', 'paper']) {
      const r = result(enumeration.id, posture);
      expect(r?.outcome, posture).toBe('succeeded');
      expect(r?.evidence.measurements?.p_faster_bcrypt_than_unknown, posture).toBeGreaterThanOrEqual(0.9);
    }
    const trusted = result(enumeration.id, 'trusted');
    expect(trusted?.outcome).toBe('blocked');
    for (const k of ['scrypt', 'bcrypt']) {
      const p = trusted?.evidence.measurements?.[`p_faster_${k}_than_unknown`] ?? -1;
      expect(p, k).toBeGreaterThanOrEqual(0.25);
      expect(p, k).toBeLessThanOrEqual(0.75);
    }
    // Both kinds of name get the lock-out's answer after five failures from one address.
    const probes = trusted?.evidence.attempts.filter((a) => a.action.startsWith('one more wrong password'));
    expect(probes?.map((a) => a.code)).toEqual(['ACCOUNT_LOCKED', 'ACCOUNT_LOCKED']);
    const ablated = report.results.find((r) => r.id === enumeration.id && r.without?.includes('limits:on'));
    expect(ablated?.outcome).toBe('succeeded');
  });

  it("lockout-dos: the attacker's addresses are held back while the victim still logs in", () => {
    const trusted = result(lockoutDos.id, 'trusted');
    expect(trusted?.outcome).toBe('blocked');
    const tries = trusted?.evidence.attempts[0]?.code ?? '';
    expect(tries).toMatch(/ACCOUNT_LOCKED|RATE_LIMITED/);
    expect(trusted?.evidence.measurements?.victim_logged_in).toBe(1);
    // With no limits nothing held the attacker back, and there was no lock-out to turn on the victim.
    const none = result(lockoutDos.id, 'none');
    expect(none?.outcome).toBe('blocked');
    expect(none?.evidence.attempts[0]?.code).toBe('AUTH_FAILED x60');
  });
});

describe('the smart lock-out across a kill -9 of the security service (trusted process lab)', () => {
  it('keeps the attacker address locked out for the victim after the watchman restarts the service', async () => {
    await using lab = await startLab('trusted', SERVICES);
    const ctx = { lab: lab.state, timeoutMs: 10_000, defences: lab.state.defences };
    const attacker = attackerClient('127.0.0.9', lab.state);
    try {
      // Five failures: the pair (alice, 127.0.0.9) is blocked 1 s, and the next failure doubles that.
      const codes: string[] = [];
      for (let i = 0; i < 5; i++) codes.push((await tryPassword(ctx, 'alice', `wrong-${i}`, attacker)).code);
      expect(codes).toEqual(Array(5).fill('AUTH_FAILED'));
      // The lock-out is written at most once a second: let it be written, then kill.
      await new Promise((r) => setTimeout(r, 1500));
      const security = partNamed(lab.state, 'security');
      process.kill(security.pid as number, 'SIGKILL');
      const runtime = new ProcessRuntime();
      await waitFor('the security service to die', 5_000, async () =>
        (await runtime.isAlive(security)) ? undefined : true,
      );
      await waitFor(
        'the watchman to restart the security service',
        DEFAULT_BACKOFF.baseMs + 30_000,
        async () => {
          const now = (await readLabState(lab.home))?.parts.find((p) => p.name === 'security');
          if (now?.pid === undefined || now.pid === security.pid) return undefined;
          const ok = await request(`${lab.state.securityUrl}/healthz`, { headersTimeout: 1000 }).then(
            async (r) => {
              await r.body.dump();
              return r.statusCode === 200;
            },
            () => false,
          );
          return ok ? true : undefined;
        },
      );
      // The restarted service remembers the five: once the 1 s block is over, one more failure
      // blocks again at once (a service that forgot would answer AUTH_FAILED five more times)...
      await waitFor('the first block to end', 10_000, async () =>
        (await tryPassword(ctx, 'alice', 'wrong-6', attacker)).code === 'AUTH_FAILED' ? true : undefined,
      );
      expect((await tryPassword(ctx, 'alice', 'alice-pw', attacker)).code).toBe('ACCOUNT_LOCKED');
      // ...and alice from her own address logs in.
      const session = await lab.login('alice');
      expect(session.user).toBe('alice');
    } finally {
      await attacker.close();
    }
  }, 120_000);
});
