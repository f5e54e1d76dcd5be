import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runAttacks } from '../../../src/attacks/runner.js';
import { relayedTicket } from '../../../src/attacks/scenarios/identity.relayed-ticket.js';
import { POSTURES } from '../../../src/defences/posture.js';
import { jsonRequest } from '../../../src/kernel/http-client.js';
import { requireLabState } from '../../../src/kernel/lab-state.js';
import { labDown } from '../../../src/lab/down.js';
import { labUp } from '../../../src/lab/up.js';

/**
 * identity.relayed-ticket (issue 13, item 6) in every posture, on processes: a compromised
 * customers spends the ticket of a request that reached it on writes at accounts (a peer it calls,
 * for reads) and at catalog (one it never calls). Both land in none and paper; in trusted accounts
 * refuses what its edge does not allow and catalog refuses a caller that is not one of its own.
 */
describe.sequential("a compromised service spends a user's ticket on writes off the call path", () => {
  it("succeeds in none and paper and is blocked in trusted, from the peers' answers and the records", async () => {
    const report = await runAttacks({ scenarios: [relayedTicket], postures: POSTURES, services: 3 });
    const by = Object.fromEntries(report.results.map((r) => [r.posture, r]));
    expect(report.results.map((r) => `${r.posture}:${r.outcome}:${r.passed}:${r.reverted}`)).toEqual([
      'none:succeeded:true:true',
      'paper:succeeded:true:true',
      'trusted:blocked:true:true',
    ]);
    // the victim's own request, each write as the peer answered it, each record read back
    for (const posture of ['none', 'paper'] as const) {
      expect(by[posture]?.evidence.attempts.map((a) => [a.status, a.gotData])).toEqual([
        [200, false],
        [200, true],
        [200, true],
        [200, true],
        [200, true],
      ]);
    }
    expect(by.trusted?.evidence.attempts.map((a) => [a.status, a.code, a.gotData])).toEqual([
      [200, undefined, false],
      [403, 'PEER_CALL_NOT_ALLOWED', false],
      [404, 'RECORD_NOT_FOUND', false],
      [403, 'PEER_CERTIFICATE_INVALID', false],
      [404, 'RECORD_NOT_FOUND', false],
    ]);
  }, 240_000);

  it('reverts: customers runs its own code again (a request to it writes nowhere) and the records the attack wrote are gone', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tms-relay-revert-'));
    const home = join(dir, 'home');
    try {
      await labUp({ home, posture: 'none', services: 3 });
      const report = await runAttacks({ scenarios: [relayedTicket], postures: ['none'], home });
      expect(report.results[0]).toMatchObject({ outcome: 'succeeded', passed: true, reverted: true });
      const state = await requireLabState(home);
      const url = (name: string) => state.parts.find((p) => p.name === name)?.url as string;
      const headers = (db: string) => ({
        'x-tms-user': 'alice',
        'x-tms-role': 'admin',
        'x-tms-perms': JSON.stringify({ [db]: ['read'] }),
      });
      // A request reaching customers now is served by its own code: it writes nowhere.
      await jsonRequest(`${url('customers')}/db/customers/records`, { headers: headers('customers') });
      for (const db of ['accounts', 'catalog']) {
        const after = await jsonRequest<{ records: { id: string }[] }>(`${url(db)}/db/${db}/records`, {
          headers: headers(db),
        });
        expect([db, after.records.map((r) => r.id).filter((id) => id.startsWith('tms-relay-'))]).toEqual([
          db,
          [],
        ]);
      }
    } finally {
      await labDown(home);
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
