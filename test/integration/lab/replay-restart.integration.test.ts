import { join } from 'node:path';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { authHeaders } from '../../../src/client/call.js';
import type { Session } from '../../../src/client/session.js';
import { loadPrivateKeyFile, privateKeyPath } from '../../../src/crypto/keys.js';
import { jsonRequest } from '../../../src/kernel/http-client.js';
import { readLabState, writeLabState } from '../../../src/kernel/lab-state.js';
import { ProcessRuntime } from '../../../src/lab/runtimes/process.js';
import { packageRoot } from '../../../src/paths.js';
import { type Challenge, signatureToWire, signChallenge } from '../../../src/protocol/challenge.js';
import { createProof, PROOF_HEADER } from '../../../src/protocol/proof.js';
import { deriveSessionKey, newExchangeKeyPair } from '../../../src/protocol/session-key.js';
import { decodeTicketUnverified } from '../../../src/protocol/ticket.js';
import { startLab } from '../../support/lab.js';
import { partNamed, waitFor } from '../hardening/wait.js';

/**
 * Replay across a restart of the security service (a real SIGTERM and a new process with the same
 * config): a signed challenge already used is refused again, a captured request (ticket + proof) is
 * still refused as a replay, and the ticket itself stays valid (the signing key is on disk, 0600).
 */
describe('replay across a security-service restart', () => {
  it('refuses a used challenge and a replayed proof after the restart; the ticket still works', async () => {
    await using lab = await startLab('trusted', 2);
    const gw = lab.state.gatewayUrl;
    const key = await loadPrivateKeyFile(privateKeyPath(lab.keys, 'alice'));
    const exchange = newExchangeKeyPair();
    const challenge = await jsonRequest<Challenge>(`${gw}/auth/challenge`, {
      body: { user: 'alice', password: 'alice-pw', clientKey: exchange.publicKeyRaw },
    });
    const answer = { id: challenge.id, signature: signatureToWire(signChallenge(key, challenge)) };
    const v = await jsonRequest<{ ticket: string; serverKey: string }>(`${gw}/auth/verify`, { body: answer });
    const session: Session = {
      user: 'alice',
      labId: lab.state.labId,
      posture: 'trusted',
      ticket: v.ticket,
      sessionKey: deriveSessionKey(exchange.privateKey, v.serverKey, challenge.id).toString('base64url'),
    };
    const path = '/svc/accounts/db/accounts/records';
    const captured = authHeaders(session, 'GET', path, undefined);
    const first = await request(`${gw}${path}`, { headers: captured });
    expect(first.statusCode).toBe(200);
    await first.body.dump();

    // restart the security service: same config, same files, a new process
    const runtime = new ProcessRuntime();
    const security = lab.state.parts.find((p) => p.kind === 'security');
    if (security === undefined) throw new Error('no security part');
    await runtime.stop(security);
    expect(await runtime.isAlive(security)).toBe(false);
    const restarted = await runtime.start({
      name: 'security',
      kind: 'security',
      entry: join(packageRoot(), 'dist', 'src', 'services', 'security', 'main.js'),
      configFile: security.configFile,
      port: security.port,
      url: security.url,
      logFile: security.logFile,
      mounts: [],
    });
    // so that the lab's teardown (which reads the state file) stops the new process
    security.pid = restarted.pid;
    await writeLabState(lab.home, lab.state);
    for (let i = 0; i < 100; i++) {
      const ok = await jsonRequest(`${lab.state.securityUrl}/healthz`, { timeoutMs: 1000 }).then(
        () => true,
        () => false,
      );
      if (ok) break;
      await new Promise((r) => setTimeout(r, 100));
    }

    await expect(jsonRequest(`${gw}/auth/verify`, { body: answer })).rejects.toMatchObject({
      code: 'CHALLENGE_UNKNOWN',
    });
    const replay = await request(`${gw}${path}`, { headers: captured });
    expect(replay.statusCode).toBe(401);
    expect(((await replay.body.json()) as { code: string }).code).toBe('PROOF_REPLAYED');
    const fresh = await request(`${gw}${path}`, { headers: authHeaders(session, 'GET', path, undefined) });
    expect(fresh.statusCode).toBe(200);
    await fresh.body.dump();
    // and a new login works against the restarted service
    expect((await lab.login('bob')).ticket).toBeTruthy();
  }, 120_000);

  it('refuses a request stamped ahead of the gateway, replayed after the gateway was killed and restarted by the watchman', async () => {
    // The third clock red team's A12: a client whose clock runs fast (here 25 s, inside the 30 s
    // window), its request captured; the gateway killed; the captured request replayed once the
    // watchman has it back. Before: 200 once (the new gateway refused only proofs stamped before its start).
    await using lab = await startLab('trusted', 2);
    const gw = lab.state.gatewayUrl;
    const session = await lab.login('alice');
    const path = '/svc/accounts/db/accounts/records';
    const fastClock = () => Date.now() + 25_000;
    const fastClientHeaders = (stamp: number) => ({
      authorization: `Bearer ${session.ticket}`,
      [PROOF_HEADER]: createProof({
        sessionKey: Buffer.from(session.sessionKey as string, 'base64url'),
        method: 'GET',
        path,
        jti: decodeTicketUnverified(session.ticket as string).claims.jti,
        now: () => stamp,
      }),
    });
    const stampedAt = fastClock();
    const captured = fastClientHeaders(stampedAt);
    const first = await request(`${gw}${path}`, { headers: captured });
    expect(first.statusCode).toBe(200);
    await first.body.dump();

    const gateway = partNamed(lab.state, 'gateway');
    process.kill(gateway.pid as number, 'SIGKILL');
    const runtime = new ProcessRuntime();
    await waitFor('the gateway to die', 5_000, async () =>
      (await runtime.isAlive(gateway)) ? undefined : true,
    );
    // back by itself (the watchman's first backoff is 1 s), at a new pid
    await waitFor('the watchman to restart the gateway', 30_000, async () => {
      const state = await readLabState(lab.home);
      if (state === undefined || partNamed(state, 'gateway').pid === gateway.pid) return undefined;
      const health = await request(`${gw}/healthz`).catch(() => undefined);
      await health?.body.dump();
      return health?.statusCode === 200 ? true : undefined;
    });
    // Otherwise the replay would be refused by the new gateway's start time alone, and prove nothing.
    expect(Date.now(), 'the gateway was back before the captured stamp').toBeLessThan(stampedAt);

    const replay = await request(`${gw}${path}`, { headers: captured });
    expect(replay.statusCode).toBe(401);
    expect(((await replay.body.json()) as { code: string }).code).toBe('PROOF_REPLAYED');
    // the fast client goes on: its next proofs are stamped later, on its clock
    const fresh = await request(`${gw}${path}`, { headers: fastClientHeaders(fastClock()) });
    expect(fresh.statusCode).toBe(200);
    await fresh.body.dump();
  }, 120_000);
});
