import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { callService } from '../../../src/client/call.js';
import { login } from '../../../src/client/login.js';
import type { Session } from '../../../src/client/session.js';
import { loadPrivateKeyFile, privateKeyPath } from '../../../src/crypto/keys.js';
import { adminChannel } from '../../../src/kernel/admin-channel.js';
import { trustLabEdge } from '../../../src/kernel/edge-client.js';
import { jsonRequest } from '../../../src/kernel/http-client.js';
import { type LabState, readLabState } from '../../../src/kernel/lab-state.js';
import { labDown } from '../../../src/lab/down.js';
import { startLab } from '../../../src/lab/running-lab.js';
import { decodeTicketUnverified } from '../../../src/protocol/ticket.js';
import { openUserAdmin } from '../../../src/users/admin.js';
import { keygenForUser } from '../../../src/users/keygen.js';
import { requirePostgresOrSkip } from '../../support/postgres.js';

const run = requirePostgresOrSkip('security service replicas on PostgreSQL');

const USERS = [
  { name: 'alice', role: 'admin', password: 'alice-pw' },
  { name: 'bob', role: 'admin', password: 'bob-pw' },
];

describe
  .runIf(run)
  .sequential('lab up --posture trusted --store postgres --security-replicas 2 (issue 17)', () => {
    it('spreads logins over both replicas, keeps logging users in while one is killed -9 (the watchman restarts it), and a revocation at one replica is refused through the gateway', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'tms-replicas-'));
      const home = join(dir, 'home');
      const keys = join(dir, 'keys');
      try {
        await using lab = await startLab({
          home,
          posture: 'trusted',
          services: 3,
          store: { kind: 'postgres' },
          securityReplicas: 2,
        });
        const state = lab.state;
        // edge:tls: this test's own requests to the gateway check it against the lab CA
        await trustLabEdge(state);
        const replicas = state.securityReplicas ?? [];
        expect(replicas.map((r) => r.part)).toEqual(['security', 'security-2']);
        expect(state.parts.filter((p) => p.kind === 'security').map((p) => p.name)).toEqual([
          'security',
          'security-2',
        ]);

        const admin = await openUserAdmin(home);
        for (const u of USERS) {
          await admin.addUser(u);
          await keygenForUser(admin, { user: u.name, type: 'ed25519', keyDir: keys, force: false });
        }
        const keyOf = new Map(
          await Promise.all(
            USERS.map(async (u) => [u.name, await loadPrivateKeyFile(privateKeyPath(keys, u.name))] as const),
          ),
        );
        const signIn = (user: string): Promise<Session> =>
          login(state, user, USERS.find((u) => u.name === user)?.password ?? '', keyOf.get(user)).then(
            (r) => r.session,
          );
        const call = (session: Session) =>
          callService(session, {
            gatewayUrl: state.gatewayUrl,
            service: 'accounts',
            path: '/db/accounts/records',
          });

        // Which replica signed a ticket: each publishes its own key first, then the others'.
        const kidOf = new Map<string, string>();
        for (const r of replicas) {
          const published = await jsonRequest<{ keys: { kid: string }[] }>(`${r.url}/v1/keys`);
          expect(published.keys).toHaveLength(2);
          kidOf.set(published.keys[0]?.kid as string, r.part);
        }
        const signedBy = (s: Session) => kidOf.get(decodeTicketUnverified(s.ticket as string).header.kid);

        // 1. Logins spread: the gateway sends each login's steps to the replicas in turn, and the
        //    second step may reach the other replica than the first (the challenge is in the store).
        const spread = new Map<string, number>();
        for (let i = 0; i < 8; i++) {
          const s = await signIn('alice');
          const by = signedBy(s) ?? 'unknown';
          spread.set(by, (spread.get(by) ?? 0) + 1);
          const r = await call(s);
          expect(r.status, `ticket of ${by}: ${JSON.stringify(r.body)}`).toBe(200);
        }
        console.log(`logins by replica: ${JSON.stringify(Object.fromEntries(spread))}`);
        expect(spread.get('security')).toBeGreaterThan(0);
        expect(spread.get('security-2')).toBeGreaterThan(0);

        // 2. kill -9 one replica (the first: the one the feeds, the control-plane calls and the
        //    admin channel start with) while users log in and call.
        const victim = state.parts.find((p) => p.name === 'security') as LabState['parts'][number];
        const errors: string[] = [];
        let logins = 0;
        let calls = 0;
        let stop = false;
        const worker = async (user: string) => {
          while (!stop) {
            try {
              const s = await signIn(user);
              logins += 1;
              const r = await call(s);
              if (r.status !== 200) errors.push(`call ${r.status} ${JSON.stringify(r.body).slice(0, 120)}`);
              else calls += 1;
            } catch (err) {
              errors.push(`login: ${(err as Error).message.slice(0, 160)}`);
            }
          }
        };
        const workers = [worker('alice'), worker('bob'), worker('alice'), worker('bob')];
        await sleep(1500);
        const killedAt = performance.now();
        process.kill(victim.pid as number, 'SIGKILL');
        // The watchman brings it back as a new process.
        let back: LabState['parts'][number] | undefined;
        while (performance.now() - killedAt < 30_000) {
          const now = await readLabState(home);
          back = now?.parts.find((p) => p.name === 'security' && p.pid !== victim.pid);
          if (back) {
            const healthy = await jsonRequest(`${back.url}/healthz`, { timeoutMs: 1000 }).then(
              () => true,
              () => false,
            );
            if (healthy) break;
          }
          await sleep(100);
        }
        const restartedMs = Math.round(performance.now() - killedAt);
        await sleep(1500);
        stop = true;
        await Promise.all(workers);
        const gatewayLog = await readFile(join(home, 'lab', 'logs', 'gateway.log'), 'utf8');
        const retried = gatewayLog.split('\n').filter((l) => l.includes('got no answer from'));
        console.log(
          `kill -9 security (pid ${victim.pid}) during ${logins} logins and ${calls} calls: ${errors.length} user-visible errors${
            errors.length ? ` (${errors.slice(0, 5).join(' | ')})` : ''
          }; ${retried.length} login steps sent again inside the gateway${
            retried.length ? ` (first: ${retried[0]?.replace(/^.*gateway: /, '')})` : ''
          }; the watchman had it back (pid ${back?.pid}, healthy) ${restartedMs} ms after the kill`,
        );
        // The gateway's feed lost security and moved on (to security-2, the only other replica).
        expect(gatewayLog).toMatch(/revocation feed: .*retrying in/);
        expect(back?.pid).toBeDefined();
        expect(back?.pid).not.toBe(victim.pid);
        expect(logins).toBeGreaterThan(4);
        expect(errors).toEqual([]);

        // 3. bob revoked at the first replica, back from the dead: the parts' feeds moved to
        //    security-2 when it died and keep to it, so the change reaches them through the store
        //    (NOTIFY to security-2, which publishes it on its feed): the bound measured is that path.
        const bobSession = await signIn('bob');
        expect((await call(bobSession)).status).toBe(200);
        const first = replicas[0] as NonNullable<LabState['securityReplicas']>[number];
        const atFirst = await adminChannel(home, { ...state, securityReplicas: [first] });
        expect(atFirst.url).toBe(first.controlPlaneUrl);
        await atFirst.call('/v1/admin/users/bob/revoke', { method: 'POST' });
        const revokedAt = performance.now();
        let refusedMs: number | undefined;
        let refusal: unknown;
        while (performance.now() - revokedAt < 10_000) {
          const r = await call(bobSession);
          if (r.status !== 200) {
            refusedMs = Math.round(performance.now() - revokedAt);
            refusal = r.body;
            break;
          }
          await sleep(10);
        }
        console.log(
          `revoked at security (the gateway's feed on security-2): bob's ticket refused via the gateway ${refusedMs} ms later: ${JSON.stringify(refusal)}`,
        );
        expect(refusal).toMatchObject({ code: 'TICKET_REVOKED' });
        expect(refusedMs).toBeLessThan(2000);
        await expect(signIn('bob')).rejects.toMatchObject({ code: 'USER_REVOKED' });
        // alice is untouched
        expect((await call(await signIn('alice'))).status).toBe(200);
      } finally {
        await labDown(home, undefined, { purge: true }).catch(() => undefined);
        await rm(dir, { recursive: true, force: true });
      }
    }, 240_000);
  });
