import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { callService } from '../../../src/client/call.js';
import type { GatewayPartConfig, SecurityPartConfig } from '../../../src/kernel/part-config.js';
import { labStatus } from '../../../src/lab/status.js';
import { LabClock } from '../../../src/protocol/lab-clock.js';
import { parseRevocationList } from '../../../src/protocol/revocation-list.js';
import { FeedVerifier } from '../../../src/protocol/signed-feed.js';
import { startLab } from '../../support/lab.js';

const MAX_AGE_S = 6;

/**
 * feeds:signed against a real trusted process lab with a 6 s bound (issue 13, item 2): a quiet lab
 * stays fresh (the heartbeat), the feed on the wire verifies with the trust bundle the parts hold
 * (and not with the ticket key), a frozen security service makes the gateway refuse with
 * CONTROL_PLANE_STALE within the bound, `lab status` says so, and the lab recovers by itself.
 */
describe.sequential('signed control-plane feeds with a staleness bound (trusted, process lab)', () => {
  it('stays fresh when quiet, fails closed when the control plane is frozen past the bound, and recovers', async () => {
    await using lab = await startLab('trusted', 2, undefined, { feedMaxAgeSeconds: MAX_AGE_S });
    const session = await lab.login('alice');
    const records = { gatewayUrl: lab.state.gatewayUrl, service: 'accounts', path: '/db/accounts/records' };
    const gatewayPart = lab.state.parts.find((p) => p.kind === 'gateway');
    const securityPart = lab.state.parts.find((p) => p.kind === 'security');
    if (!gatewayPart || securityPart?.pid === undefined) throw new Error('no gateway or security process');
    const gatewayConfig = JSON.parse(await readFile(gatewayPart.configFile, 'utf8')) as GatewayPartConfig;
    const securityConfig = JSON.parse(await readFile(securityPart.configFile, 'utf8')) as SecurityPartConfig;

    // The parts hold the public bundle and the bound; the key that signs is not the ticket key.
    expect(gatewayConfig.feedTrust?.maxAgeMs).toBe(MAX_AGE_S * 1000);
    expect(securityConfig.feedKeyFile).toBeDefined();
    expect(securityConfig.feedKeyFile).not.toBe(securityConfig.ticketKeyFile);

    // A quiet lab, twice the bound: still served (the security service re-issued the feeds).
    await sleep(2 * MAX_AGE_S * 1000);
    expect((await callService(session, records)).status).toBe(200);
    const quiet = await labStatus(lab.home);
    expect(quiet.parts.find((p) => p.name === 'gateway')?.feeds?.stale).toBe(false);

    // What the security service serves verifies with the parts' bundle, and is a fresh issue.
    const answer = await fetchJson(`${lab.state.securityUrl}/v1/revocations`);
    const clock = new LabClock();
    clock.adopt((answer as { labTimeMs: number }).labTimeMs);
    const verifier = new FeedVerifier(
      gatewayConfig.feedTrust as NonNullable<GatewayPartConfig['feedTrust']>,
      lab.state.labId,
      () => clock.now(),
    );
    const { feed } = verifier.open('revocations', answer, parseRevocationList);
    expect(clock.now() - feed.issuedAt).toBeLessThanOrEqual(MAX_AGE_S * 1000);

    // Frozen: refused with CONTROL_PLANE_STALE within the bound (plus a poll and a request).
    process.kill(securityPart.pid, 'SIGSTOP');
    const frozenAt = performance.now();
    let refused: { status: number; code?: unknown; ms: number } | undefined;
    try {
      while (refused === undefined && performance.now() - frozenAt < (MAX_AGE_S + 4) * 1000) {
        const res = await callService(session, records);
        if (res.status !== 200) {
          refused = {
            status: res.status,
            code: (res.body as { code?: unknown } | null)?.code,
            ms: performance.now() - frozenAt,
          };
        } else await sleep(250);
      }
      expect(refused).toMatchObject({ status: 503, code: 'CONTROL_PLANE_STALE' });
      expect(refused?.ms).toBeLessThanOrEqual((MAX_AGE_S + 2) * 1000);
      // the gateway said so: in its log and in lab status
      await sleep(1500);
      const stale = await labStatus(lab.home);
      expect(stale.parts.find((p) => p.name === 'gateway')?.feeds?.stale).toBe(true);
      expect(await readFile(gatewayPart.logFile, 'utf8')).toMatch(/feeds: CONTROL_PLANE_STALE/);
    } finally {
      process.kill(securityPart.pid, 'SIGCONT');
    }

    // Thawed: served again by itself, within a poll's retry.
    const thawedAt = performance.now();
    let status = 0;
    while (status !== 200 && performance.now() - thawedAt < 15_000) {
      status = (await callService(session, records)).status;
      if (status !== 200) await sleep(250);
    }
    expect(status).toBe(200);
    await sleep(1500);
    const recovered = await labStatus(lab.home);
    expect(recovered.parts.find((p) => p.name === 'gateway')?.feeds?.stale).toBe(false);
  }, 180_000);
});

async function fetchJson(url: string): Promise<unknown> {
  const res = await request(url, { headersTimeout: 5000, bodyTimeout: 5000 });
  return res.body.json();
}
