import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { LoginLockout, monotonicNow, RateLimiter } from '../../../src/defences/rate-limit.js';
import { isTrustedMsError } from '../../../src/errors.js';
import { createProof, ProofVerifier } from '../../../src/protocol/proof.js';
import { issueTicket, type TicketClaims, TicketVerifier } from '../../../src/protocol/ticket.js';

/**
 * A wall clock stepped back or forward by an hour (NTP, an operator, a VM resumed), on the clocks
 * the code already injects: nothing crashes, no expired or replayed credential is accepted, and
 * nobody is locked out for the step's length.
 */

const HOUR = 3_600_000;
const T0 = 1_767_225_600_000;

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (isTrustedMsError(err)) return err.code;
    throw err;
  }
  return undefined;
}

describe('rate limits and lock-outs on a stepped clock', () => {
  it('durations default to a monotonic clock', () => {
    const a = monotonicNow();
    expect(monotonicNow()).toBeGreaterThanOrEqual(a);
    // performance.now counts from the process start, not from 1970: a wall clock would be ~1.7e12.
    expect(a).toBeLessThan(1e11);
  });

  it('a bucket emptied, then the clock stepped back an hour: refilled at its rate from there, not an hour later', () => {
    const clock = { now: T0 };
    const limiter = new RateLimiter(1, 2, () => clock.now);
    expect([limiter.take('c'), limiter.take('c'), limiter.take('c')]).toEqual([true, true, false]);
    clock.now -= HOUR;
    expect(limiter.take('c')).toBe(false);
    clock.now += 1_000;
    expect(limiter.take('c')).toBe(true);
  });

  it('the clock stepped forward an hour: the bucket is full, never more than its burst', () => {
    const clock = { now: T0 };
    const limiter = new RateLimiter(1, 2, () => clock.now);
    limiter.take('c');
    limiter.take('c');
    clock.now += HOUR;
    expect([limiter.take('c'), limiter.take('c'), limiter.take('c')]).toEqual([true, true, false]);
  });

  it('a user locked out, then the clock stepped back an hour: the lock still ends one lock length later', () => {
    const clock = { now: T0 };
    const lockout = new LoginLockout(3, 10 * 60_000, 60_000, () => clock.now);
    for (let i = 0; i < 3; i++) lockout.fail('alice');
    expect(lockout.isLocked('alice')).toBe(true);
    clock.now -= HOUR;
    // Still locked (a step back does not let a guesser in)...
    expect(lockout.isLocked('alice')).toBe(true);
    clock.now += 60_001;
    // ...and free one lock length later, not an hour and a minute later.
    expect(lockout.isLocked('alice')).toBe(false);
  });

  it("failures before a step back do not keep the lock-out window open for the step's length", () => {
    const clock = { now: T0 };
    const lockout = new LoginLockout(3, 10 * 60_000, 60_000, () => clock.now);
    lockout.fail('bob');
    lockout.fail('bob');
    clock.now -= HOUR;
    lockout.fail('bob');
    // Three failures within the window as the clock reads now: locked, as without the step.
    expect(lockout.isLocked('bob')).toBe(true);
    clock.now += 11 * 60_000;
    lockout.fail('bob');
    expect(lockout.isLocked('bob')).toBe(false);
  });
});

describe('credentials on a stepped wall clock', () => {
  const key = generateKeyPairSync('ed25519');
  const ISSUER = 'trusted-ms://lab-1/security';
  const AUDIENCE = 'trusted-ms://lab-1';
  const iat = Math.floor(T0 / 1000);
  const claims: TicketClaims = {
    v: 1,
    iss: ISSUER,
    aud: AUDIENCE,
    sub: 'alice',
    role: 'analyst',
    perms: {},
    iat,
    exp: iat + 900,
    jti: randomBytes(16).toString('base64url'),
    posture: 'paper',
  };
  const token = issueTicket({ kid: 'k1', privateKey: key.privateKey }, claims);

  it('a ticket checked once, then the clock stepped forward an hour: expired, from the cache too', () => {
    const clock = { now: T0 + 1_000 };
    const v = new TicketVerifier({
      keys: new Map([['k1', key.publicKey]]),
      issuer: ISSUER,
      audience: AUDIENCE,
      now: () => clock.now,
    });
    expect(v.verify(token).sub).toBe('alice');
    clock.now += HOUR;
    expect(codeOf(() => v.verify(token))).toBe('TICKET_EXPIRED');
  });

  it('a ticket seen by a verifier whose clock is an hour behind: refused as issued in the future, no crash', () => {
    const v = new TicketVerifier({
      keys: new Map([['k1', key.publicKey]]),
      issuer: ISSUER,
      audience: AUDIENCE,
      now: () => T0 - HOUR,
      leewaySeconds: 60,
    });
    expect(codeOf(() => v.verify(token))).toBe('TICKET_INVALID');
  });

  it('a proof accepted, then replayed after a step back or forward of an hour, or of 10 s: refused each time', () => {
    const clock = { now: T0 };
    const verifier = new ProofVerifier({ now: () => clock.now });
    const req = {
      sessionKey: randomBytes(32),
      method: 'GET',
      path: '/svc/accounts/db/accounts/records',
      body: undefined,
      jti: 'ICEiIyQlJicoKSorLC0uLw',
    };
    const header = createProof({ ...req, now: () => T0 });
    expect(codeOf(() => verifier.verify({ ...req, header }))).toBeUndefined();
    for (const step of [-HOUR, +HOUR, -10_000, +10_000]) {
      clock.now = T0 + step;
      expect(
        codeOf(() => verifier.verify({ ...req, header })),
        `step ${step} ms`,
      ).toMatch(/^PROOF_(INVALID|REPLAYED)$/);
    }
  });
});
