import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { attackerClient } from '../../../src/attacks/http.js';
import { tryPassword } from '../../../src/attacks/password-attempt.js';
import { callService } from '../../../src/client/call.js';
import { login } from '../../../src/client/login.js';
import type { Session } from '../../../src/client/session.js';
import { loadPrivateKeyFile, privateKeyPath } from '../../../src/crypto/keys.js';
import { trustLabEdge } from '../../../src/kernel/edge-client.js';
import { readLabState } from '../../../src/kernel/lab-state.js';
import { labDown } from '../../../src/lab/down.js';
import { startLab } from '../../../src/lab/running-lab.js';
import { restartsFile } from '../../../src/lab/supervisor/restarts.js';
import { openLabStore } from '../../../src/store/open.js';
import { serverPid } from '../../../src/store/postgres/local-server.js';
import { openUserAdmin } from '../../../src/users/admin.js';
import { keygenForUser } from '../../../src/users/keygen.js';
import { requirePostgresOrSkip } from '../../support/postgres.js';

const run = requirePostgresOrSkip("the lab's PostgreSQL killed under 2 security replicas");

const codeOf = async (p: Promise<unknown>): Promise<{ code: string; message: string } | undefined> => {
  try {
    await p;
    return undefined;
  } catch (err) {
    const e = err as { code?: unknown; message?: unknown };
    return { code: typeof e.code === 'string' ? e.code : 'THREW', message: String(e.message).slice(0, 200) };
  }
};

describe
  .runIf(run)
  .sequential('kill -9 of the lab PostgreSQL under --security-replicas 2 (issue 17 item 5)', () => {
    it('logins and admin writes fail closed with STORE_UNAVAILABLE (503) at both replicas, nothing is half-written, and the watchman brings the server back', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'tms-pg-down-'));
      const home = join(dir, 'home');
      const keys = join(dir, 'keys');
      let watchman: number | undefined;
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
        const admin = await openUserAdmin(home);
        await admin.addUser({ name: 'alice', role: 'admin', password: 'alice-pw' });
        await keygenForUser(admin, { user: 'alice', type: 'ed25519', keyDir: keys, force: false });
        const key = await loadPrivateKeyFile(privateKeyPath(keys, 'alice'));
        const signIn = (): Promise<Session> => login(state, 'alice', 'alice-pw', key).then((r) => r.session);
        const call = (s: Session) =>
          callService(s, { gatewayUrl: state.gatewayUrl, service: 'accounts', path: '/db/accounts/records' });
        const before = await signIn();
        expect((await call(before)).status).toBe(200);
        const auditBefore = (await (await openLabStore(home)).auditRecords()).length;

        // kill -9 of the postmaster the lab started (its backends follow it).
        const server = state.store?.kind === 'postgres' ? state.store.server : undefined;
        expect(server?.pid).toBeDefined();
        const clusterDir = server?.clusterDir as string;
        // The watchman brings the server back (postgres-watch.ts) within about a second: it is
        // paused meanwhile so that the checks below see the server down, however slow they run.
        watchman = state.parts.find((p) => p.kind === 'supervisor')?.pid as number;
        process.kill(watchman, 'SIGSTOP');
        process.kill(server?.pid as number, 'SIGKILL');
        const killedAt = performance.now();
        while ((await serverPidAlive(server?.pid as number)) && performance.now() - killedAt < 10_000)
          await sleep(50);

        // 1. Logins, at both replicas (the gateway sends each step to the next in turn): refused
        //    with the store's code, the right password and a wrong one alike (a guess that cannot be
        //    counted is not checked).
        const down: string[] = [];
        for (let i = 0; i < 2; i++) {
          const failed = await codeOf(signIn());
          down.push(`login: ${failed?.code} "${failed?.message}"`);
          expect(failed?.code).toBe('STORE_UNAVAILABLE');
        }
        const guesser = attackerClient('127.0.0.8', state);
        try {
          for (let i = 0; i < 2; i++) {
            const a = await tryPassword(
              { lab: state, timeoutMs: 20_000, defences: state.defences },
              'alice',
              `wrong-${randomBytes(4).toString('hex')}`,
              guesser,
            );
            down.push(`wrong password: ${a.status} ${a.code} in ${Math.round(a.ms)} ms`);
            expect({ status: a.status, code: a.code }).toEqual({ status: 503, code: 'STORE_UNAVAILABLE' });
          }
        } finally {
          await guesser.close().catch(() => undefined);
        }
        // 2. An admin write through the running lab's admin channel: refused, nothing written.
        const adminDown = await codeOf(admin.addUser({ name: 'bob', role: 'analyst', password: 'bob-pw' }));
        down.push(`user add bob: ${adminDown?.code} "${adminDown?.message}"`);
        expect(adminDown?.code).toBe('STORE_UNAVAILABLE');
        // 3. A ticket issued before keeps working until it expires: the gateway and the services
        //    check tickets with the published keys, never the store.
        const during = await call(before);
        down.push(`call with a ticket issued before: ${during.status}`);
        expect(during.status).toBe(200);
        // Every part is still up: none crashed on the lost connections.
        const now = await readLabState(home);
        for (const p of now?.parts ?? []) {
          if (p.kind === 'security') expect(state.parts.find((q) => q.name === p.name)?.pid).toBe(p.pid);
        }
        console.log(`PostgreSQL (pid ${server?.pid}) killed -9:\n  ${down.join('\n  ')}`);

        // 4. The watchman goes on: it finds the server dead and starts it as lab up did (same
        //    cluster, same port), and names the new PID in the lab's state (lab down stops it).
        const restartedAt = performance.now();
        safeKill(watchman, 'SIGCONT');
        let firstLoginMs: number | undefined;
        const afterErrors: string[] = [];
        while (performance.now() - restartedAt < 30_000) {
          const failed = await codeOf(signIn());
          if (failed === undefined) {
            firstLoginMs = Math.round(performance.now() - restartedAt);
            break;
          }
          afterErrors.push(failed.code);
          await sleep(100);
        }
        expect(firstLoginMs).toBeDefined();
        // Both replicas log in again, the admin write goes through, a wrong password counts again.
        for (let i = 0; i < 4; i++) expect((await call(await signIn())).status).toBe(200);
        await admin.addUser({ name: 'bob', role: 'analyst', password: 'bob-pw' });
        const after = await readLabState(home);
        const newPid = after?.store?.kind === 'postgres' ? after.store.server?.pid : undefined;
        expect(newPid).toBe(await serverPid(clusterDir));
        expect(newPid).not.toBe(server?.pid);
        const restarts = JSON.parse(await readFile(restartsFile(home), 'utf8')) as Record<string, unknown>;
        expect(restarts.postgres).toMatchObject({ restarts: 1 });
        console.log(
          `the watchman restarted PostgreSQL (pid ${newPid}): the first login ${firstLoginMs} ms after it went on${
            afterErrors.length
              ? ` (before it, ${afterErrors.length} logins refused: ${[...new Set(afterErrors)].join(', ')})`
              : ''
          }; 4 more logins and user add bob went through`,
        );

        // 5. Nothing half-written: bob exists once (the refused add left nothing), the audit chain
        //    is whole and holds no record of the refused add.
        const store = await openLabStore(home);
        try {
          expect(Object.keys((await store.data()).users).sort()).toEqual(['alice', 'bob']);
          const verified = await store.verifyAudit();
          expect(verified).toMatchObject({ ok: true });
          const records = await store.auditRecords();
          expect(records.length).toBeGreaterThan(auditBefore);
          const bobAdds = records.filter((r) => r.target === 'bob' && r.outcome !== 'denied');
          console.log(
            `after: audit chain of ${records.length} records verifies; records naming bob: ${bobAdds
              .map((r) => `${r.action}/${r.outcome}`)
              .join(', ')}`,
          );
        } finally {
          await store.close();
        }
      } finally {
        // A paused watchman (an assertion failed while it was) must not hold up lab down.
        if (watchman !== undefined) safeKill(watchman, 'SIGCONT');
        await labDown(home, undefined, { purge: true }).catch(() => undefined);
        await rm(dir, { recursive: true, force: true });
      }
    }, 240_000);
  });

function safeKill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

async function serverPidAlive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
