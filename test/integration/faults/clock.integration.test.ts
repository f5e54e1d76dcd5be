import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { trustLabEdge } from '../../../src/kernel/edge-client.js';
import { readLabState } from '../../../src/kernel/lab-state.js';
import { openUserAdmin } from '../../../src/users/admin.js';
import { keygenForUser } from '../../../src/users/keygen.js';
import { cli, cliJson, tempLab } from '../../support/cli.js';
import { waitFor } from '../hardening/wait.js';

/**
 * The wall clock of a real lab stepped, with libfaketime (Debian's `faketime`): every part and the
 * CLI run with it preloaded, reading their clock offset from one file the test rewrites, as a whole
 * machine's clock steps under NTP or an operator. The monotonic clock is left alone
 * (FAKETIME_DONT_FAKE_MONOTONIC), as a step leaves it. libfaketime works with Node 20 this way
 * (tried: Date and timers follow the file at once, performance.now does not move).
 */

const LIBFAKETIME = [
  '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1',
  '/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1',
  '/usr/lib/faketime/libfaketime.so.1',
].find((f) => existsSync(f));
const inCi = process.env.CI === 'true';
if (LIBFAKETIME === undefined && !inCi) {
  console.warn(
    '\n!!! SKIPPED: a real lab under a stepped wall clock (no libfaketime; apt-get install -y faketime).\n',
  );
}

type Envelope = { status: number; error?: { code: string; message: string } };

/** A lab under libfaketime, in a temp home: `step('-1h')` steps the wall clock of every part and of the CLI. */
async function steppedLab(
  posture: 'paper' | 'trusted',
  users: string[],
  identityTtlSeconds = 86_400,
  upAt = '+0',
) {
  const lab = await tempLab();
  const offsetFile = join(lab.dir, 'faketime-offset');
  const step = (offset: string) => writeFile(offsetFile, `${offset}\n`);
  await step(upAt);
  const env = {
    LD_PRELOAD: LIBFAKETIME as string,
    FAKETIME_TIMESTAMP_FILE: offsetFile,
    FAKETIME_NO_CACHE: '1',
    FAKETIME_DONT_FAKE_MONOTONIC: '1',
  };
  const run = (args: string[], input?: string) => cli(lab, args, { env, ...(input ? { input } : {}) });
  const admin = await openUserAdmin(lab.home);
  for (const name of users) {
    await admin.addUser({ name, role: 'admin', password: `${name}-pw` });
    // The paper's login needs an RSA key.
    const type = posture === 'paper' ? 'rsa' : 'ed25519';
    await keygenForUser(admin, { user: name, type, keyDir: lab.keys, force: false });
  }
  // The parts get nothing of the CLI's environment unless named (lab up --part-env).
  const up = await run([
    'lab',
    'up',
    '--runtime',
    'process',
    '--posture',
    posture,
    '--services',
    '2',
    ...Object.keys(env).flatMap((name) => ['--part-env', name]),
    // Identities last 300 s by default and are checked by OpenSSL on the wall clock: a step of
    // 50 min would put every certificate past its end. A day, so that the steps test the lab clock.
    ...(posture === 'trusted' ? ['--identity-ttl', String(identityTtlSeconds)] : []),
  ]);
  return {
    up,
    step,
    run,
    dirs: lab,
    /** Kills a part (SIGKILL) and waits until the watchman has it back and answering. */
    async restart(name: 'security' | 'gateway'): Promise<void> {
      const before = (await readLabState(lab.home))?.parts.find((p) => p.name === name);
      expect(before?.pid).toBeDefined();
      process.kill(before?.pid as number, 'SIGKILL');
      await waitFor(`the watchman to restart ${name}`, 60_000, async () => {
        const state = await readLabState(lab.home);
        const now = state?.parts.find((p) => p.name === name);
        if (state === undefined || now?.pid === undefined || now.pid === before?.pid) return undefined;
        // edge:tls: the gateway's certificate checked against the lab CA
        await trustLabEdge(state);
        const url = name === 'security' ? state.securityUrl : state.gatewayUrl;
        const res = await request(`${url}/healthz`).catch(() => undefined);
        await res?.body.dump();
        return res?.statusCode === 200 ? true : undefined;
      });
    },
    async code(args: string[], input?: string): Promise<string | undefined> {
      const r = await cliJson<Envelope>(lab, args, { env, ...(input ? { input } : {}) });
      return r.exitCode === 0 ? 'OK' : r.json.error?.code;
    },
    async login(user: string): Promise<void> {
      const r = await run(['user', 'login', user, '--password-stdin'], `${user}-pw`);
      expect(r.exitCode, `${user} login: ${r.stderr}`).toBe(0);
    },
    async [Symbol.asyncDispose]() {
      await run(['lab', 'down']);
      await lab[Symbol.asyncDispose]();
    },
  };
}

describe.runIf(LIBFAKETIME !== undefined || inCi)('a running lab whose wall clock steps', () => {
  it('paper: forward 2 h and back 2 s later (red team): tickets from before and after work, nobody is locked out; a revocation after a step back still revokes', async () => {
    expect(LIBFAKETIME, 'CI=true but libfaketime is missing: apt-get install -y faketime').toBeDefined();
    await using lab = await steppedLab('paper', ['alice', 'bob', 'carol']);
    expect(lab.up.exitCode, lab.up.stderr).toBe(0);
    const call = (user: string) => lab.code(['call', 'accounts', '/db/accounts/records', '--as', user]);
    await lab.login('alice');
    expect(await call('alice')).toBe('OK');

    // Forward 2 h, a call during it (the gateway reads its clock), back 2 s later. The lab runs on
    // its own clock, not the wall: alice's ticket is still valid. (Before: TICKET_EXPIRED, and the
    // gateway stayed 2 h ahead of the security service, so every fresh ticket was TICKET_EXPIRED.)
    await lab.step('+2h');
    expect(await call('alice')).toBe('OK');
    await lab.step('+0');
    await lab.login('bob');
    expect(await call('bob')).toBe('OK');
    expect(await call('alice')).toBe('OK');

    // Back 2 h: a login works (nobody locked out); a revocation after the step refuses bob's
    // ticket (its notBefore is on the lab clock, as the tickets' iat).
    await lab.step('-2h');
    await lab.login('carol');
    expect(await call('carol')).toBe('OK');
    expect(await call('bob')).toBe('OK');
    expect((await lab.run(['user', 'revoke', 'bob'])).exitCode).toBe(0);
    expect(await call('bob')).toBe('TICKET_REVOKED');
    expect(await call('carol')).toBe('OK');
  }, 240_000);

  it('trusted: after a step back of an hour, a login and its requests work (before: refused as proofs from before the gateway started)', async () => {
    expect(LIBFAKETIME, 'CI=true but libfaketime is missing: apt-get install -y faketime').toBeDefined();
    await using lab = await steppedLab('trusted', ['alice', 'bob']);
    expect(lab.up.exitCode, lab.up.stderr).toBe(0);
    const call = (user: string) => lab.code(['call', 'accounts', '/db/accounts/records', '--as', user]);
    await lab.login('alice');
    expect(await call('alice')).toBe('OK');
    await lab.step('-1h');
    await lab.login('bob');
    expect(await call('bob')).toBe('OK');
    // alice's session was in use before the step: once the gateway has forgotten her proofs of more
    // than 30 s ago, her new ones (stamped an hour earlier) may be replays and are refused until she
    // logs in again; before that, they pass.
    expect(await call('alice')).toMatch(/^(OK|PROOF_REPLAYED)$/);
    await lab.login('alice');
    expect(await call('alice')).toBe('OK');
    await lab.step('+0');
    expect(await call('alice')).toBe('OK');
    expect(await call('bob')).toBe('OK');
  }, 240_000);

  it('trusted: forward 50 min and back, or a 5 s blip, with a login during it (red team): every new ticket works everywhere', async () => {
    expect(LIBFAKETIME, 'CI=true but libfaketime is missing: apt-get install -y faketime').toBeDefined();
    // 50 min, not 2 h: the lab's identities (a day here, see steppedLab) are checked on the wall clock.
    await using lab = await steppedLab('trusted', ['alice', 'bob', 'carol', 'dave']);
    expect(lab.up.exitCode, lab.up.stderr).toBe(0);
    const call = (user: string) => lab.code(['call', 'accounts', '/db/accounts/records', '--as', user]);
    await lab.login('alice');
    expect(await call('alice')).toBe('OK');

    // Before: the security service followed the step (a login read its clock), the gateway and the
    // services did not, and refused every later ticket as issued in the future.
    await lab.step('+50m');
    await lab.login('bob');
    await lab.step('+0');
    await lab.login('carol');
    expect(await call('carol')).toBe('OK');
    expect(await call('bob')).toBe('OK');

    await lab.step('+5s');
    await lab.login('dave');
    await lab.step('+0');
    await lab.login('alice');
    expect(await call('alice')).toBe('OK');
    expect(await call('dave')).toBe('OK');
  }, 240_000);

  it('paper: a security service restarted across a step back of 1 h: revocations still refuse the old tickets, new logins work', async () => {
    expect(LIBFAKETIME, 'CI=true but libfaketime is missing: apt-get install -y faketime').toBeDefined();
    await using lab = await steppedLab('paper', ['alice', 'bob', 'carol', 'dave']);
    expect(lab.up.exitCode, lab.up.stderr).toBe(0);
    const call = (user: string) => lab.code(['call', 'accounts', '/db/accounts/records', '--as', user]);
    for (const user of ['alice', 'bob', 'carol']) {
      await lab.login(user);
      expect(await call(user)).toBe('OK');
    }

    await lab.step('-1h');
    await lab.restart('security');
    // Before: each of these wrote a notBefore an hour before the tickets it must refuse.
    const keys = await cliJson<{ result: { keys: { thumbprint: string }[] } }>(lab.dirs, [
      'user',
      'key',
      'list',
      'alice',
    ]);
    const thumbprint = keys.json.result.keys[0]?.thumbprint as string;
    expect((await lab.run(['user', 'key', 'remove', '--', 'alice', thumbprint])).exitCode).toBe(0);
    expect((await lab.run(['user', 'revoke', 'bob'])).exitCode).toBe(0);
    expect((await lab.run(['user', 'reinstate', 'bob'])).exitCode).toBe(0);
    expect((await lab.run(['user', 'remove', 'carol'])).exitCode).toBe(0);
    const readd = await lab.run(['user', 'add', 'carol', '--role', 'admin', '--password-stdin'], 'carol-pw');
    expect(readd.exitCode, readd.stderr).toBe(0);
    for (const user of ['alice', 'bob', 'carol']) expect(await call(user), user).toBe('TICKET_REVOKED');

    // Before: the restarted service's clock was an hour behind the gateway's, so its new tickets
    // were already expired there.
    await lab.login('dave');
    expect(await call('dave')).toBe('OK');

    // Also once the wall clock is right again.
    await lab.step('+0');
    for (const user of ['alice', 'bob', 'carol']) expect(await call(user), user).toBe('TICKET_REVOKED');
    expect(await call('dave')).toBe('OK');
  }, 240_000);

  it('trusted: a forward step of 2 h held over a watchman round, then back (third clock red team, F1b), identities of 20 s: identities are still renewed, the lab serves past their lifetime', async () => {
    expect(LIBFAKETIME, 'CI=true but libfaketime is missing: apt-get install -y faketime').toBeDefined();
    // Identities of 20 s, renewed at half-life by the watchman through the admin channel.
    await using lab = await steppedLab('trusted', ['alice', 'bob'], 20);
    expect(lab.up.exitCode, lab.up.stderr).toBe(0);
    const call = (user: string) => lab.code(['call', 'accounts', '/db/accounts/records', '--as', user]);
    await lab.login('alice');
    expect(await call('alice')).toBe('OK');
    // Before: the watchman's admin identity, due for renewal on the stepped wall clock, was minted
    // again during the step, dated 2 h ahead, refused by the security service once the wall was
    // right, and kept: no attestation round and no renewal got through, and every certificate of
    // the lab ran out (PEER_CERTIFICATE_INVALID) a lifetime later.
    await lab.step('+2h');
    await new Promise((r) => setTimeout(r, 12_000));
    await lab.step('+0');
    // more than one lifetime after the step
    await new Promise((r) => setTimeout(r, 30_000));
    expect(await call('alice')).toBe('OK');
    await lab.login('bob');
    expect(await call('bob')).toBe('OK');
  }, 300_000);

  it('trusted: the gateway restarted during a step back of 1 h (fourth clock red team, F2) comes back and serves', async () => {
    expect(LIBFAKETIME, 'CI=true but libfaketime is missing: apt-get install -y faketime').toBeDefined();
    await using lab = await steppedLab('trusted', ['alice', 'bob']);
    expect(lab.up.exitCode, lab.up.stderr).toBe(0);
    const call = (user: string) => lab.code(['call', 'accounts', '/db/accounts/records', '--as', user]);
    await lab.login('alice');
    expect(await call('alice')).toBe('OK');
    // Before: the security service's certificate, back-dated 60 s, was not yet valid on the
    // restarted gateway's wall clock; it exited CONTROL_PLANE_UNTRUSTED at each start and the
    // watchman gave up on it, so the lab stayed without a gateway after the clock was right.
    await lab.step('-1h');
    await lab.restart('gateway');
    await lab.login('bob');
    expect(await call('bob')).toBe('OK');
    await lab.step('+0');
    await lab.login('alice');
    expect(await call('alice')).toBe('OK');
    expect(await call('bob')).toBe('OK');
  }, 240_000);

  it('trusted: the security service restarted during a step back of 1 h, identities of 20 s (fifth clock red team, K): served a lifetime after the clock is right', async () => {
    expect(LIBFAKETIME, 'CI=true but libfaketime is missing: apt-get install -y faketime').toBeDefined();
    await using lab = await steppedLab('trusted', ['alice'], 20);
    expect(lab.up.exitCode, lab.up.stderr).toBe(0);
    const call = () => lab.code(['call', 'accounts', '/db/accounts/records', '--as', 'alice']);
    await lab.login('alice');
    expect(await call()).toBe('OK');
    await lab.step('-1h');
    await lab.restart('security');
    // the watchman reaches the restarted service during the step (a new admin identity)
    await new Promise((r) => setTimeout(r, 16_000));
    await lab.step('+0');
    // Before: the watchman's admin identity, dated on its wall during the step, had ended once the
    // clock was right; on its kept-alive connection each call was refused 403
    // PEER_CERTIFICATE_INVALID, the identity was kept, no renewal got through and every part's
    // certificate ran out: 403 PEER_CERTIFICATE_INVALID on every request for about 4 minutes.
    // Identities of 20 s: more than one lifetime after the step.
    await new Promise((r) => setTimeout(r, 30_000));
    expect(await call()).toBe('OK');
    await lab.login('alice');
    expect(await call()).toBe('OK');
  }, 300_000);

  it('trusted: a lab started during a forward step of 2 h (fourth clock red team, F4) serves once the wall is right: a user added, logins, calls', async () => {
    expect(LIBFAKETIME, 'CI=true but libfaketime is missing: apt-get install -y faketime').toBeDefined();
    await using lab = await steppedLab('trusted', ['alice'], 86_400, '+2h');
    expect(lab.up.exitCode, lab.up.stderr).toBe(0);
    // Before: the CA and the first identities were dated 2 h ahead, not yet valid once the wall was
    // right: `user add` (the admin channel) and every login failed for 2 h.
    await lab.step('+0');
    expect(await lab.code(['user', 'add', 'carol', '--role', 'admin', '--password-stdin'], 'carol-pw')).toBe(
      'OK',
    );
    await lab.login('alice');
    expect(await lab.code(['call', 'accounts', '/db/accounts/records', '--as', 'alice'])).toBe('OK');
  }, 240_000);

  it('trusted: the security service crashes during a forward step of 2 h (red team A7): sessions of the moment keep working', async () => {
    expect(LIBFAKETIME, 'CI=true but libfaketime is missing: apt-get install -y faketime').toBeDefined();
    await using lab = await steppedLab('trusted', ['alice', 'bob']);
    expect(lab.up.exitCode, lab.up.stderr).toBe(0);
    const call = (user: string) => lab.code(['call', 'accounts', '/db/accounts/records', '--as', user]);
    await lab.login('alice');
    expect(await call('alice')).toBe('OK');

    // Before: the restarted service started 2 h ahead (the wall clock at its start) and the lab's
    // calendar stayed there: alice's ticket was TICKET_EXPIRED everywhere. With only that fixed, its
    // control-plane certificate was issued on the wall (+2 h), not yet valid once the wall was right
    // again, and bob's login failed SERVICE_UNAVAILABLE.
    await lab.step('+2h');
    await lab.restart('security');
    await lab.step('+0');
    expect(await call('alice')).toBe('OK');
    await lab.login('bob');
    expect(await call('bob')).toBe('OK');
    expect(await call('alice')).toBe('OK');
  }, 240_000);
});
