import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runAttacks } from '../../../src/attacks/runner.js';
import { untrustedServiceKeepsCert } from '../../../src/attacks/scenarios/identity.untrusted-service-keeps-cert.js';
import { POSTURES } from '../../../src/defences/posture.js';
import { jsonRequest } from '../../../src/kernel/http-client.js';
import { requireLabState } from '../../../src/kernel/lab-state.js';
import { labDown } from '../../../src/lab/down.js';
import { builtFile } from '../../../src/lab/plan.js';
import { labUp } from '../../../src/lab/up.js';

/**
 * identity.untrusted-service-keeps-cert (issue 13) in every posture, on processes: customers'
 * code is changed, and what customers holds (a user's ticket; in trusted its certificate and key)
 * reads and writes accounts' data in none and paper, and is refused by accounts in trusted.
 */
describe.sequential('a service that failed attestation calls a peer with its certificate', () => {
  it("succeeds in none and paper and is blocked in trusted, from the peer's answers", async () => {
    const report = await runAttacks({
      scenarios: [untrustedServiceKeepsCert],
      postures: POSTURES,
      services: 2,
    });
    const by = Object.fromEntries(report.results.map((r) => [r.posture, r]));
    expect(report.results.map((r) => `${r.posture}:${r.outcome}:${r.passed}`)).toEqual([
      'none:succeeded:true',
      'paper:succeeded:true',
      'trusted:blocked:true',
    ]);
    for (const posture of ['none', 'paper'] as const) {
      // the read and the write both went through
      expect(by[posture]?.evidence.attempts.map((a) => [a.status, a.gotData])).toEqual([
        [200, true],
        [200, true],
      ]);
    }
    expect(by.trusted?.evidence.attempts.map((a) => [a.status, a.code, a.gotData])).toEqual([
      [403, 'PEER_UNTRUSTED', false],
      [403, 'PEER_UNTRUSTED', false],
    ]);
  }, 240_000);

  it('reverts: customers runs its own code again and the record the attack wrote is gone', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tms-untrusted-revert-'));
    const home = join(dir, 'home');
    try {
      await labUp({ home, posture: 'none', services: 2 });
      const report = await runAttacks({ scenarios: [untrustedServiceKeepsCert], postures: ['none'], home });
      expect(report.results[0]).toMatchObject({ outcome: 'succeeded', passed: true });
      const state = await requireLabState(home);
      const accounts = state.parts.find((p) => p.name === 'accounts');
      const headers = {
        'x-tms-user': 'alice',
        'x-tms-role': 'admin',
        'x-tms-perms': JSON.stringify({ accounts: ['read'] }),
      };
      const after = await jsonRequest<{ records: { id: string }[] }>(`${accounts?.url}/db/accounts/records`, {
        headers,
      });
      expect(after.records.map((r) => r.id).filter((id) => id.startsWith('tms-attack-'))).toEqual([]);
      const customers = state.parts.find((p) => p.name === 'customers');
      expect(await readFile(join(customers?.appDir as string, 'service.mjs'))).toEqual(
        await readFile(builtFile('lab', 'service.mjs')),
      );
    } finally {
      await labDown(home);
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
