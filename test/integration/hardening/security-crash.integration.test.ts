import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { callService } from '../../../src/client/call.js';
import { labDir, readLabState } from '../../../src/kernel/lab-state.js';
import { ProcessRuntime } from '../../../src/lab/runtimes/process.js';
import { DEFAULT_BACKOFF } from '../../../src/lab/supervisor/backoff.js';
import { startLab } from '../../support/lab.js';
import { partNamed, waitFor } from './wait.js';

const WRITERS = 8;
const ACKED_BEFORE_KILL = 24;

/**
 * The security service is the store's only writer. Killed with SIGKILL in the middle of a burst of
 * concurrent admin writes (`user add` through the admin API), it is brought back by the lab's
 * watchman; its store then loads, and every write it had acknowledged (answered 2xx) is there.
 * Writes in flight at the kill were never acknowledged and may or may not be. Tickets issued before
 * the crash stay valid, and new ones verify with the key the gateway already had (the signing key
 * is persisted, 0600: test/integration/lab/secrets.integration.test.ts).
 */
describe('kill -9 of the security service during a burst of admin writes (trusted)', () => {
  it('keeps every acknowledged write across the crash and restart', async () => {
    await using lab = await startLab('trusted', 3);
    const gatewayUrl = lab.state.gatewayUrl;
    const records = { service: 'accounts', path: '/db/accounts/records' };
    const before = await lab.login('alice');
    expect((await callService(before, { gatewayUrl, ...records })).status).toBe(200);
    const token = (await readFile(join(labDir(lab.home), 'lab-token'), 'utf8')).trim();
    const securityUrl = lab.state.securityUrl;
    const security = partNamed(lab.state, 'security');
    const admin = (method: 'GET' | 'POST', path: string, body?: unknown) =>
      request(`${securityUrl}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        headersTimeout: 10_000,
        bodyTimeout: 10_000,
      });

    const acked: string[] = [];
    const unacked: string[] = [];
    let next = 0;
    let writing = true;
    const writers = Array.from({ length: WRITERS }, async () => {
      while (writing) {
        const name = `burst-${next++}`;
        try {
          const res = await admin('POST', '/v1/admin/users', {
            name,
            role: 'analyst',
            password: `password-of-${name}`,
          });
          await res.body.dump();
          (res.statusCode >= 200 && res.statusCode < 300 ? acked : unacked).push(name);
        } catch {
          unacked.push(name);
        }
      }
    });

    await waitFor('acknowledged writes', 60_000, async () =>
      acked.length >= ACKED_BEFORE_KILL ? true : undefined,
    );
    process.kill(security.pid as number, 'SIGKILL');
    const runtime = new ProcessRuntime();
    await waitFor('the security service to die', 5_000, async () =>
      (await runtime.isAlive(security)) ? undefined : true,
    );
    writing = false;
    await Promise.all(writers);
    const ackedAtKill = [...acked];

    // back by itself: a new process, and its store loaded
    await waitFor(
      'the watchman to restart the security service',
      DEFAULT_BACKOFF.baseMs + 30_000,
      async () => {
        const now = (await readLabState(lab.home))?.parts.find((p) => p.name === 'security');
        if (now?.pid === undefined || now.pid === security.pid) return undefined;
        const ok = await request(`${securityUrl}/healthz`, { headersTimeout: 1000 }).then(
          async (r) => {
            await r.body.dump();
            return r.statusCode === 200;
          },
          () => false,
        );
        return ok ? true : undefined;
      },
    );

    const missing: string[] = [];
    for (const name of ackedAtKill) {
      const res = await admin('GET', `/v1/admin/users/${name}`);
      await res.body.dump();
      if (res.statusCode !== 200) missing.push(`${name}: ${res.statusCode}`);
    }
    let unackedPresent = 0;
    for (const name of unacked) {
      const res = await admin('GET', `/v1/admin/users/${name}`);
      await res.body.dump();
      if (res.statusCode === 200) unackedPresent += 1;
    }
    console.log(
      `acknowledged ${ackedAtKill.length} writes before the kill; unacknowledged ${unacked.length} (${unackedPresent} present after the restart)`,
    );
    expect(ackedAtKill.length).toBeGreaterThanOrEqual(ACKED_BEFORE_KILL);
    expect(missing).toEqual([]);
    // and the restarted service still takes writes (the dead writer's lock did not block it for good)
    const after = await admin('POST', '/v1/admin/users', {
      name: 'after-crash',
      role: 'analyst',
      password: 'password-after-crash',
    });
    await after.body.dump();
    expect(after.statusCode).toBe(200);
    // The ticket-signing key is the one on disk: a ticket issued before the crash still works, and
    // one issued by the restarted service is accepted by the gateway, which kept the key it had.
    expect((await callService(before, { gatewayUrl, ...records })).status).toBe(200);
    const fresh = await lab.login('alice');
    expect((await callService(fresh, { gatewayUrl, ...records })).status).toBe(200);
  }, 120_000);
});
