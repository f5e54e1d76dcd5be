import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openUserAdmin } from '../../../src/users/admin.js';
import { keygenForUser } from '../../../src/users/keygen.js';
import { cli, cliJson, tempLab } from '../../support/cli.js';

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
async function steppedLab(posture: 'paper' | 'trusted', users: string[]) {
  const lab = await tempLab();
  const offsetFile = join(lab.dir, 'faketime-offset');
  const step = (offset: string) => writeFile(offsetFile, `${offset}\n`);
  await step('+0');
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
  ]);
  return {
    up,
    step,
    run,
    async code(args: string[]): Promise<string | undefined> {
      const r = await cliJson<Envelope>(lab, args, { env });
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
  it('paper: an expired ticket stays expired after a step back of 2 h, a revocation after it still revokes, nobody is locked out', async () => {
    expect(LIBFAKETIME, 'CI=true but libfaketime is missing: apt-get install -y faketime').toBeDefined();
    await using lab = await steppedLab('paper', ['alice', 'bob', 'carol']);
    expect(lab.up.exitCode, lab.up.stderr).toBe(0);
    const call = (user: string) => lab.code(['call', 'accounts', '/db/accounts/records', '--as', user]);
    await lab.login('alice');
    expect(await call('alice')).toBe('OK');

    // Forward 2 h: alice's ticket (an hour long) has expired; a login works (no lock-out).
    await lab.step('+2h');
    expect(await call('alice')).toBe('TICKET_EXPIRED');
    await lab.login('bob');
    expect(await call('bob')).toBe('OK');

    // Back 2 h, to where alice's ticket was valid: it stays expired (it was accepted before).
    await lab.step('+0');
    expect(await call('alice')).toBe('TICKET_EXPIRED');
    // bob's ticket from before the step and a login after it both work: nobody is locked out.
    expect(await call('bob')).toBe('OK');
    await lab.login('carol');
    expect(await call('carol')).toBe('OK');

    // A revocation after the step back refuses bob's ticket, issued "2 h later" on the wall clock
    // (before: its notBefore came from the stepped-back clock, older than the ticket).
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
});
