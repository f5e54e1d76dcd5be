import { describe, expect, it } from 'vitest';
import type { PasswordAnswer } from '../../../src/attacks/password-attempt.js';
import { enumeration } from '../../../src/attacks/scenarios/accounts.enumeration.js';
import { lockoutDos } from '../../../src/attacks/scenarios/accounts.lockout-dos.js';
import { loginBypass } from '../../../src/attacks/scenarios/accounts.login-bypass.js';
import type { ScenarioContext } from '../../../src/attacks/types.js';

/** The judges read only the evidence a detonation left: a context holding just that. */
const judged = (scenario: typeof enumeration, scratch: Record<string, unknown>) => {
  const ctx = { scratch, evidence: { attempts: [] } } as unknown as ScenarioContext;
  return { verdict: scenario.judge(ctx), ctx };
};

const failed = (ms: number): PasswordAnswer => ({
  status: 401,
  code: 'AUTH_FAILED',
  message: 'authentication failed',
  ms,
});
/** n times around `center`, spread evenly over ±`spread` (a deterministic stand-in for noise). */
const around = (center: number, spread: number, n = 24) =>
  Array.from({ length: n }, (_, i) => failed(center - spread + (2 * spread * i) / (n - 1)));
const locked: PasswordAnswer = {
  status: 423,
  code: 'ACCOUNT_LOCKED',
  message: 'too many failed logins',
  ms: 2,
};

describe('accounts.enumeration judges codes and timing, and says inconclusive when unsure', () => {
  const afterFailures = { known: locked, unknown: locked };

  it('succeeded: the imported bcrypt user answers in 4 ms and a made-up name in 40 ms', () => {
    const samples = { unknown: around(40, 5), scrypt: around(40, 5), bcrypt: around(4, 1) };
    expect(judged(enumeration, { samples, afterFailures }).verdict).toBe('succeeded');
  });

  it('blocked: the same distributions, interleaved', () => {
    const samples = { unknown: around(60, 30), scrypt: around(60, 30), bcrypt: around(61, 30) };
    expect(judged(enumeration, { samples, afterFailures }).verdict).toBe('blocked');
  });

  it('inconclusive, never blocked: a shift the statistics cannot call either way', () => {
    const samples = { unknown: around(60, 10), scrypt: around(60, 10), bcrypt: around(53, 10) };
    const { verdict, ctx } = judged(enumeration, { samples, afterFailures });
    expect(verdict).toBe('inconclusive');
    expect(ctx.evidence.inconclusive).toMatch(/not clear-cut/);
  });

  it('inconclusive: too few tries got a password verdict (a limit answered the rest)', () => {
    const limited = { status: 429, code: 'RATE_LIMITED', message: 'too many requests', ms: 1000 };
    const few = (n: number) => [...around(60, 10, n), ...Array(24 - n).fill(limited)];
    const samples = { unknown: few(5), scrypt: few(5), bcrypt: few(5) };
    expect(judged(enumeration, { samples, afterFailures }).verdict).toBe('inconclusive');
  });

  it('succeeded: only real names are told ACCOUNT_LOCKED (the lock-out before this issue)', () => {
    const samples = { unknown: around(60, 30), scrypt: around(60, 30), bcrypt: around(60, 30) };
    const leak = { known: locked, unknown: failed(60) };
    expect(judged(enumeration, { samples, afterFailures: leak }).verdict).toBe('succeeded');
  });

  it('succeeded: an answer that one kind of name gets and another never does', () => {
    const other = (n: number) => ({
      ...failed(60),
      status: 404,
      code: 'USER_NOT_FOUND',
      message: 'no such user',
      ms: n,
    });
    const samples = {
      unknown: around(60, 30).map((a, i) => (i % 2 === 0 ? other(a.ms) : a)),
      scrypt: around(60, 30),
      bcrypt: around(60, 30),
    };
    expect(judged(enumeration, { samples, afterFailures }).verdict).toBe('succeeded');
  });
});

describe('accounts.lockout-dos judges by whether the victim still logs in', () => {
  const answers = Array(60).fill(failed(60));

  it('succeeded when the victim is refused by a lock-out', () => {
    expect(
      judged(lockoutDos, { answers, victim: { ok: false, code: 'ACCOUNT_LOCKED', message: '' } }).verdict,
    ).toBe('succeeded');
  });

  it('blocked when the victim logs in after a delivered attack', () => {
    expect(judged(lockoutDos, { answers, victim: { ok: true } }).verdict).toBe('blocked');
  });

  it('inconclusive when the attack was not delivered or the victim failed for another reason', () => {
    const undelivered = Array(60).fill({ ...failed(5), status: undefined, code: 'UND_ERR_SOCKET' });
    expect(judged(lockoutDos, { answers: undelivered, victim: { ok: true } }).verdict).toBe('inconclusive');
    expect(
      judged(lockoutDos, { answers, victim: { ok: false, code: 'SERVICE_UNAVAILABLE', message: '' } })
        .verdict,
    ).toBe('inconclusive');
  });
});

describe('accounts.login-bypass judges the direct answers', () => {
  const answer = (status: number | undefined, code: string): PasswordAnswer => ({
    status,
    code,
    message: '',
    ms: 1,
  });
  const times = (n: number, a: PasswordAnswer) => Array.from({ length: n }, () => a);

  it('succeeded: the security service checked the guesses itself (AUTH_FAILED), whatever metered the rest', () => {
    expect(judged(loginBypass, { answers: times(12, failed(60)) }).verdict).toBe('succeeded');
    const someMetered = [...times(6, failed(60)), ...times(6, answer(429, 'RATE_LIMITED'))];
    expect(judged(loginBypass, { answers: someMetered }).verdict).toBe('succeeded');
  });

  it('blocked: every step refused before a password was checked', () => {
    for (const code of ['LOGIN_VIA_GATEWAY_ONLY', 'ADMIN_TOKEN_INVALID']) {
      expect(judged(loginBypass, { answers: times(12, answer(403, code)) }).verdict, code).toBe('blocked');
    }
  });

  it("inconclusive: no answer, or the security service's own meters answered most", () => {
    for (const answers of [
      times(12, answer(undefined, 'ECONNREFUSED')),
      times(12, answer(423, 'ACCOUNT_LOCKED')),
      [...times(2, failed(60)), ...times(10, answer(429, 'RATE_LIMITED'))],
      [],
    ]) {
      const { verdict, ctx } = judged(loginBypass, { answers });
      expect(verdict).toBe('inconclusive');
      expect(ctx.evidence.inconclusive).toBeTruthy();
    }
  });
});
