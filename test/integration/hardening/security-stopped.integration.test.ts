import { describe, expect, it } from 'vitest';
import { callService } from '../../../src/client/call.js';
import { cli } from '../../support/cli.js';
import { startLab } from '../../support/lab.js';
import { partNamed } from './wait.js';

/**
 * A security service that runs but does not answer (stopped with SIGSTOP: a stand-in for one too
 * busy to answer) is the store's only writer still. The red team's sequence: with it stopped,
 * `user remove` and `user revoke` wrote the store themselves ("the lab is not running"), on the
 * CLI's own clock; the service, continued, never saw them (the revoked ticket kept working) and a
 * later restart let a removed user's old ticket work again. Now the CLI waits, then refuses, and
 * changes nothing.
 */
describe('user commands while the security service is stopped (trusted)', () => {
  it('wait for it, then refuse with SERVICE_UNAVAILABLE and change nothing; once it answers they work', async () => {
    await using lab = await startLab('trusted', 2);
    const session = await lab.login('alice');
    const records = { gatewayUrl: lab.state.gatewayUrl, service: 'accounts', path: '/db/accounts/records' };
    expect((await callService(session, records)).status).toBe(200);
    const security = partNamed(lab.state, 'security');
    if (security.pid === undefined) throw new Error('the security service has no pid');
    process.kill(security.pid, 'SIGSTOP');
    try {
      const revoke = await cli(lab, ['user', 'revoke', 'alice'], { timeoutMs: 60_000 });
      expect(revoke.exitCode, revoke.stderr).toBe(8);
      expect(revoke.stderr).toContain('SERVICE_UNAVAILABLE');
      expect(revoke.stderr).toMatch(/has not answered for 15 s/);
      expect(revoke.stderr).not.toMatch(/not running/);
    } finally {
      process.kill(security.pid, 'SIGCONT');
    }
    // Nothing was changed: alice's ticket still works, and the revocation goes through the service.
    expect((await callService(session, records)).status).toBe(200);
    const again = await cli(lab, ['user', 'revoke', 'alice']);
    expect(again.exitCode, again.stderr).toBe(0);
    // The revocation feed carries it to the gateway within its poll (a long poll: at once, or 20 s).
    let status = 200;
    for (let i = 0; i < 60 && status === 200; i++) {
      status = (await callService(session, records)).status;
      if (status === 200) await new Promise((r) => setTimeout(r, 500));
    }
    expect(status).toBe(401);
  });
});
