import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { newChallenge } from '../../../src/protocol/challenge.js';
import { type PendingLogin, pendingLoginsFor } from '../../../src/services/security/login/pending-logins.js';
import { PostgresLabStore } from '../../../src/store/postgres/postgres-lab-store.js';
import { requirePostgresOrSkip, startTestPostgres, type TestPostgres } from '../../support/postgres.js';

const run = requirePostgresOrSkip('what security service replicas share in PostgreSQL');

const CLIENT_KEY = randomBytes(32).toString('base64url');

describe.runIf(run)('what replicas share through PostgreSQL (issue 17)', () => {
  let server: TestPostgres;
  let home: string;
  let url: string;
  const stores: PostgresLabStore[] = [];
  /** one store object per replica, as each security service process opens its own */
  const replica = (): PostgresLabStore => {
    const store = new PostgresLabStore(home, { url, passwordFile: server.passwordFile });
    stores.push(store);
    return store;
  };

  beforeAll(async () => {
    server = await startTestPostgres();
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
  }, 60_000);
  beforeEach(async () => {
    home = await mkdtemp(join(tmpdir(), 'tms-replicas-'));
    url = await server.freshDatabase();
  });
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close()));
    await rm(home, { recursive: true, force: true });
  });

  it('a challenge issued at one replica is answered at another exactly once, however many ask at once', async () => {
    const now = () => Date.now();
    const [a, b] = [replica(), replica()];
    const issuedAt = pendingLoginsFor(a.replicas?.pendingLogins, now);
    const answeredAt = [b, replica(), replica()].map((s) => pendingLoginsFor(s.replicas?.pendingLogins, now));
    const challenge = newChallenge('alice', 'trusted-ms://lab-1/security', CLIENT_KEY, 60, now);
    await issuedAt.add(challenge.id, { kind: 'signed-challenge', challenge });

    const takes = await Promise.all(
      answeredAt.flatMap((book) => [book.take(challenge.id), book.take(challenge.id)]),
    );
    const got = takes.filter((t): t is PendingLogin => t !== undefined);
    expect(got).toEqual([{ kind: 'signed-challenge', challenge }]);
    // Taken is gone, at the replica that issued it too.
    expect(await issuedAt.take(challenge.id)).toBeUndefined();
  });

  it("the paper's pending ticket crosses replicas byte for byte; an expired one is swept", async () => {
    const t = 1_900_000_000_000;
    const a = pendingLoginsFor(replica().replicas?.pendingLogins, () => t);
    const b = pendingLoginsFor(replica().replicas?.pendingLogins, () => t);
    const ticket = randomBytes(32);
    const expiresAt = t / 1000 + 60;
    await a.add('paper-id-0123456789', {
      kind: 'encrypted-ticket',
      id: 'paper-id-0123456789',
      user: 'bob',
      ticket,
      expiresAt,
    });
    await a.add('old-id-0123456789ab', {
      kind: 'encrypted-ticket',
      id: 'old-id-0123456789ab',
      user: 'bob',
      ticket,
      expiresAt: t / 1000 - 1,
    });
    await b.sweep();
    expect(await b.take('old-id-0123456789ab')).toBeUndefined();
    const p = await b.take('paper-id-0123456789');
    expect(p?.kind === 'encrypted-ticket' && p.ticket.equals(ticket)).toBe(true);
  });

  it("hears another replica's committed update, not its own, and not a rolled-back one", async () => {
    const [a, b] = [replica(), replica()];
    const heardByB: number[] = [];
    const heardByA: number[] = [];
    const stopB = await b.replicas?.changes.follow(() => heardByB.push(Date.now()));
    const stopA = await a.replicas?.changes.follow(() => heardByA.push(Date.now()));
    await a.update((d) => {
      d.roles.extra = { name: 'extra', description: 'x', grants: [] };
    });
    await a
      .update(() => {
        throw new Error('no');
      })
      .catch(() => undefined);
    const deadline = Date.now() + 5000;
    while (heardByB.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 200));
    expect(heardByB).toHaveLength(1);
    expect(heardByA).toHaveLength(0);
    await stopA?.();
    await stopB?.();
  });
});
