import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runAttacks } from '../../../src/attacks/runner.js';
import type { Scenario } from '../../../src/attacks/types.js';
import { labDown } from '../../../src/lab/down.js';
import { homeOfLab } from '../../../src/lab/restart.js';
import { labUp } from '../../../src/lab/up.js';
import { openRevocationAdmin } from '../../../src/users/revocation-admin.js';

/**
 * Scenarios written for this test (fakes by name): each revokes the victim, as
 * control-plane.spoofed-security does, and one lifts the revocation in its revert while the other
 * forgets to. The runner must tell them apart by whether the lab serves the victim again, not by
 * whether revert() returned.
 */
function revokesVictim(id: string, reinstates: boolean): Scenario {
  return {
    id,
    title: id,
    paperAttack: 5,
    technique: 'T1531',
    description: 'a fake scenario that revokes the victim',
    evidence: 'none: a fake',
    expected: { none: 'blocked', paper: 'blocked', trusted: 'blocked' },
    async detonate(ctx) {
      await (await openRevocationAdmin(homeOfLab(ctx.lab))).revokeUser(ctx.victim.name);
    },
    judge: () => 'blocked',
    async revert(ctx) {
      if (reinstates) await (await openRevocationAdmin(homeOfLab(ctx.lab))).reinstateUser(ctx.victim.name);
    },
  };
}

describe.sequential('the runner after a revert', () => {
  let dir: string;
  let home: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tms-served-after-revert-'));
    home = join(dir, 'home');
    await labUp({ home, posture: 'none', services: 2 });
  }, 120_000);
  afterAll(async () => {
    await labDown(home).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it('counts a revert done only once the victim is served again, and says why when it is not', async () => {
    const detonated: string[] = [];
    const report = await runAttacks({
      scenarios: [
        revokesVictim('fake.revokes-then-reinstates', true),
        revokesVictim('fake.revokes-for-good', false),
        {
          ...revokesVictim('fake.after', true),
          detonate: async () => void detonated.push('fake.after'),
        },
      ],
      postures: ['none'],
      home,
    });
    expect(report.results.map((r) => [r.id, r.outcome, r.reverted, r.passed])).toEqual([
      ['fake.revokes-then-reinstates', 'blocked', true, true],
      ['fake.revokes-for-good', 'blocked', false, false],
      ['fake.after', 'error', true, false],
    ]);
    // What the victim was last told, so the failure names its cause.
    expect(report.results[1]?.revertError).toMatch(
      /not served through the gateway within 20 s of the revert \(last: .*(REVOKED|AUTH_FAILED)/,
    );
    expect(report.results[2]?.error?.code).toBe('LAB_NOT_RESTORED');
    expect(detonated).toEqual([]);
  }, 90_000);
});
