import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SMART_LOCKOUT_POLICY, SmartLockout } from '../../../src/defences/smart-lockout.js';
import { isTrustedMsError } from '../../../src/errors.js';
import { LOGIN_THROTTLE_FILE, loginThrottleFile } from '../../../src/store/login-throttle-file.js';

const ATTACKER = '127.0.0.2';
const HOME = '127.0.0.1';
const T0 = 1_767_225_600_000;

const codeOf = (p: Promise<unknown>): Promise<string | undefined> =>
  p.then(
    () => undefined,
    (err: unknown) => (isTrustedMsError(err) ? err.code : 'not a TrustedMsError'),
  );

function onClock() {
  const clock = { now: T0 };
  const lockout = new SmartLockout({ now: () => clock.now, wall: () => clock.now });
  return { clock, lockout };
}

describe('the smart lock-out', () => {
  it('blocks a (user, source) after five failures, with a back-off that doubles, up to 15 min', async () => {
    const { clock, lockout } = onClock();
    for (let i = 0; i < 4; i++) lockout.failed('alice', ATTACKER);
    expect(await codeOf(lockout.check('alice', ATTACKER))).toBeUndefined();
    const blocks: number[] = [];
    for (let n = 5; n <= 16; n++) {
      lockout.failed('alice', ATTACKER);
      const start = clock.now;
      while ((await codeOf(lockout.check('alice', ATTACKER))) === 'ACCOUNT_LOCKED') clock.now += 250;
      blocks.push(clock.now - start);
    }
    expect(blocks).toEqual([
      1000, 2000, 4000, 8000, 16_000, 32_000, 64_000, 128_000, 256_000, 512_000, 900_000, 900_000,
    ]);
    expect(SMART_LOCKOUT_POLICY.maxBlockMs).toBe(900_000);
  });

  it("locks out the attacker's source, never the user: the user from elsewhere gets in", async () => {
    const { lockout } = onClock();
    for (let i = 0; i < 60; i++) lockout.failed('alice', ATTACKER);
    expect(await codeOf(lockout.check('alice', ATTACKER))).toBe('ACCOUNT_LOCKED');
    expect(await codeOf(lockout.check('alice', HOME))).toBeUndefined();
    // The source is held back for every name past 20 failures, existing or not: the same answer.
    expect(await codeOf(lockout.check('bob', ATTACKER))).toBe('RATE_LIMITED');
    expect(await codeOf(lockout.check('no-such-user', ATTACKER))).toBe('RATE_LIMITED');
  });

  it('answers a made-up name exactly as a real one: the lock-out tells nobody which names exist', async () => {
    const { lockout } = onClock();
    for (let i = 0; i < 5; i++) {
      lockout.failed('alice', ATTACKER);
      lockout.failed('nobody', '127.0.0.3');
    }
    expect(await codeOf(lockout.check('alice', ATTACKER))).toBe('ACCOUNT_LOCKED');
    expect(await codeOf(lockout.check('nobody', '127.0.0.3'))).toBe('ACCOUNT_LOCKED');
  });

  it('lets a user in from a familiar source that an attacker on it has spent', async () => {
    const { lockout } = onClock();
    lockout.succeeded('alice', HOME);
    // Someone behind the same address guesses other users' passwords.
    for (let i = 0; i < 25; i++) lockout.failed(`user-${i}`, HOME);
    expect(await codeOf(lockout.check('bob', HOME))).toBe('RATE_LIMITED');
    expect(await codeOf(lockout.check('alice', HOME))).toBeUndefined();
  });

  it("forgives a pair's failures only after a whole login from it", async () => {
    const { lockout } = onClock();
    for (let i = 0; i < 4; i++) lockout.failed('alice', HOME);
    lockout.succeeded('alice', HOME);
    lockout.failed('alice', HOME);
    expect(await codeOf(lockout.check('alice', HOME))).toBeUndefined();
  });
});

describe('the smart lock-out across a restart', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tms-lockout-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('is saved to the lab home and read back by the next service, blocks and familiar sources alike', async () => {
    const clock = { now: T0 };
    const first = new SmartLockout({
      now: () => clock.now,
      wall: () => clock.now,
      persistence: loginThrottleFile(dir),
      saveDelayMs: 10,
    });
    await first.check('alice', HOME);
    first.succeeded('alice', HOME);
    for (let i = 0; i < 8; i++) first.failed('alice', ATTACKER);
    await first.close();
    const saved = JSON.parse(await readFile(join(dir, LOGIN_THROTTLE_FILE), 'utf8'));
    expect(Object.keys(saved.state.pairs)).toEqual([`${ATTACKER} alice`]);

    // A new process: its monotonic clock starts elsewhere, the wall clock goes on.
    clock.now += 2000;
    const mono = { now: 5 };
    const second = new SmartLockout({
      now: () => mono.now,
      wall: () => clock.now,
      persistence: loginThrottleFile(dir),
    });
    expect(await codeOf(second.check('alice', ATTACKER))).toBe('ACCOUNT_LOCKED');
    expect(await codeOf(second.check('alice', HOME))).toBeUndefined();
    // The 8th failure blocked 8 s; 2 s passed while it was down: 6 s to go, not more.
    mono.now += 5_900;
    expect(await codeOf(second.check('alice', ATTACKER))).toBe('ACCOUNT_LOCKED');
    mono.now += 200;
    expect(await codeOf(second.check('alice', ATTACKER))).toBeUndefined();
    // The failures are remembered too: the next one blocks twice as long.
    second.failed('alice', ATTACKER);
    mono.now += 15_000;
    expect(await codeOf(second.check('alice', ATTACKER))).toBe('ACCOUNT_LOCKED');
  });

  it('writes nothing for a login from a familiar source (no store write per login)', async () => {
    let saves = 0;
    const persistence = {
      load: async () => undefined,
      save: async () => {
        saves += 1;
      },
    };
    const lockout = new SmartLockout({ persistence, saveDelayMs: 1 });
    lockout.succeeded('alice', HOME);
    await lockout.close();
    expect(saves).toBe(1);
    for (let i = 0; i < 100; i++) lockout.succeeded('alice', HOME);
    await lockout.close();
    expect(saves).toBe(1);
  });

  it('a wall clock stepped back while it was down does not lengthen a block', async () => {
    const clock = { now: T0 };
    const first = new SmartLockout({
      now: () => clock.now,
      wall: () => clock.now,
      persistence: loginThrottleFile(dir),
    });
    await first.check('alice', ATTACKER);
    for (let i = 0; i < 5; i++) first.failed('alice', ATTACKER);
    await first.close();
    clock.now -= 3_600_000;
    const second = new SmartLockout({
      now: () => clock.now,
      wall: () => clock.now,
      persistence: loginThrottleFile(dir),
    });
    expect(await codeOf(second.check('alice', ATTACKER))).toBe('ACCOUNT_LOCKED');
    clock.now += 1001;
    expect(await codeOf(second.check('alice', ATTACKER))).toBeUndefined();
  });
});
