import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { attackerClient } from '../../../src/attacks/http.js';
import { type PasswordAnswer, tryPassword } from '../../../src/attacks/password-attempt.js';
import { login } from '../../../src/client/login.js';
import { loadPrivateKeyFile, privateKeyPath } from '../../../src/crypto/keys.js';
import { SMART_LOCKOUT_POLICY } from '../../../src/defences/smart-lockout.js';
import { trustLabEdge } from '../../../src/kernel/edge-client.js';
import { labDown } from '../../../src/lab/down.js';
import { startLab } from '../../../src/lab/running-lab.js';
import { openUserAdmin } from '../../../src/users/admin.js';
import { keygenForUser } from '../../../src/users/keygen.js';
import { requirePostgresOrSkip } from '../../support/postgres.js';

const run = requirePostgresOrSkip('the smart lock-out shared by security service replicas');

/** The attacker's own address: nothing else on the lab uses it, so its meters start at zero. */
const SOURCE = '127.0.0.7';
/** Wrong passwords sent one after the other: past the gateway's burst of 10 failed steps. */
const TRIES = 14;

/**
 * The most wrong passwords one (user, source) meter lets through in `windowS` seconds
 * (docs/accounts.md): `pairFreeFailures` at once, then the k-th block lasts 2^(k-1) s, so the j-th
 * guess past the free ones comes at least 2^j - 1 s after the last free one.
 */
function documentedBudget(windowS: number): number {
  return SMART_LOCKOUT_POLICY.pairFreeFailures + Math.floor(Math.log2(windowS + 1));
}

describe
  .runIf(run)
  .sequential('smart lock-out with --security-replicas 2 on PostgreSQL (issue 17, the lead note)', () => {
    it('an attacker whose wrong passwords the gateway spreads over both replicas gets no more guesses than one meter allows', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'tms-lockout-replicas-'));
      const home = join(dir, 'home');
      try {
        await using lab = await startLab({
          home,
          posture: 'trusted',
          services: 1,
          store: { kind: 'postgres' },
          securityReplicas: 2,
        });
        const state = lab.state;
        await trustLabEdge(state);
        expect(state.securityReplicas?.map((r) => r.part)).toEqual(['security', 'security-2']);
        const admin = await openUserAdmin(home);
        await admin.addUser({ name: 'alice', role: 'admin', password: 'alice-pw' });
        const keys = join(dir, 'keys');
        await keygenForUser(admin, { user: 'alice', type: 'ed25519', keyDir: keys, force: false });

        // One address, one user, tries in a row: the gateway relays each login step to the next
        // replica in turn, so today's replicas each count half of them.
        const client = attackerClient(SOURCE, state);
        const answers: (PasswordAnswer & { at: number })[] = [];
        const t0 = performance.now();
        try {
          for (let i = 0; i < TRIES; i++) {
            const a = await tryPassword(
              { lab: state, timeoutMs: 20_000, defences: state.defences },
              'alice',
              `wrong-${randomBytes(6).toString('base64url')}`,
              client,
            );
            answers.push({ ...a, at: performance.now() - t0 });
          }
        } finally {
          await client.close().catch(() => undefined);
        }
        const guessed = answers.filter((a) => a.code === 'AUTH_FAILED');
        // From the first try's sending to the last guess's answer: never shorter than the time the
        // meter saw between its first and last failure.
        const windowS = (guessed.at(-1)?.at ?? 0) / 1000;
        const budget = documentedBudget(windowS);
        console.log(
          `${TRIES} wrong passwords for alice from ${SOURCE} over 2 replicas: ${answers
            .map((a) => `${a.code}@${Math.round(a.at)}ms`)
            .join(
              ', ',
            )}; ${guessed.length} checked against the password (AUTH_FAILED) in ${windowS.toFixed(1)} s, one meter's budget for that time: ${budget}`,
        );
        // Every try was heard: guesses, lock-outs (the replicas') or the gateway's own 429s.
        for (const a of answers) expect(['AUTH_FAILED', 'ACCOUNT_LOCKED', 'RATE_LIMITED']).toContain(a.code);
        expect(answers.some((a) => a.code === 'ACCOUNT_LOCKED')).toBe(true);
        expect(guessed.length).toBeLessThanOrEqual(budget);

        // alice herself, from her own address, logs in at both replicas (an account is never locked).
        const key = await loadPrivateKeyFile(privateKeyPath(keys, 'alice'));
        for (let i = 0; i < 2; i++) {
          await expect(login(state, 'alice', 'alice-pw', key)).resolves.toMatchObject({
            session: { user: 'alice' },
          });
        }
      } finally {
        await labDown(home, undefined, { purge: true }).catch(() => undefined);
        await rm(dir, { recursive: true, force: true });
      }
    }, 240_000);
  });
