import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { generateUserKeyPair } from '../../../src/crypto/keys.js';
import { paperEncrypt } from '../../../src/crypto/paper-scheme.js';
import { defencesFor } from '../../../src/defences/presets.js';
import { monotonicNow, RateLimiter } from '../../../src/defences/rate-limit.js';
import { BasicAtGateway } from '../../../src/defences/request/gateway-basic.js';
import { SmartLockout } from '../../../src/defences/smart-lockout.js';
import { isTrustedMsError } from '../../../src/errors.js';
import { jsonRequest } from '../../../src/kernel/http-client.js';
import { type Challenge, signatureToWire, signChallenge } from '../../../src/protocol/challenge.js';
import { createProof, ProofVerifier } from '../../../src/protocol/proof.js';
import { newExchangeKeyPair } from '../../../src/protocol/session-key.js';
import { issueTicket, type TicketClaims, TicketVerifier } from '../../../src/protocol/ticket.js';
import { buildSecurityService } from '../../../src/services/security/app.js';
import { ServiceRegistry } from '../../../src/services/security/registry.js';
import { openLabStore } from '../../../src/store/open.js';
import { addUser, addUserKey } from '../../../src/users/users.js';

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

  /** Three failures lock a (user, source) out for a minute, forgotten after ten quiet minutes. */
  const lockoutOn = (clock: { now: number }) =>
    new SmartLockout({
      policy: { pairFreeFailures: 3, baseBlockMs: 60_000, forgetAfterMs: 10 * 60_000 },
      now: () => clock.now,
    });
  const isLocked = async (lockout: SmartLockout, user: string) =>
    lockout.check(user, '127.0.0.2').then(
      () => false,
      (err: unknown) => isTrustedMsError(err, 'ACCOUNT_LOCKED'),
    );

  it('a user locked out, then the clock stepped back an hour: the lock still ends one lock length later', async () => {
    const clock = { now: T0 };
    const lockout = lockoutOn(clock);
    for (let i = 0; i < 3; i++) lockout.failed('alice', '127.0.0.2');
    expect(await isLocked(lockout, 'alice')).toBe(true);
    clock.now -= HOUR;
    // Still locked (a step back does not let a guesser in)...
    expect(await isLocked(lockout, 'alice')).toBe(true);
    clock.now += 60_001;
    // ...and free one lock length later, not an hour and a minute later.
    expect(await isLocked(lockout, 'alice')).toBe(false);
  });

  it("failures before a step back do not keep the lock-out window open for the step's length", async () => {
    const clock = { now: T0 };
    const lockout = lockoutOn(clock);
    lockout.failed('bob', '127.0.0.2');
    lockout.failed('bob', '127.0.0.2');
    clock.now -= HOUR;
    lockout.failed('bob', '127.0.0.2');
    // Three failures within the window as the clock reads now: locked, as without the step.
    expect(await isLocked(lockout, 'bob')).toBe(true);
    clock.now += 11 * 60_000;
    lockout.failed('bob', '127.0.0.2');
    expect(await isLocked(lockout, 'bob')).toBe(false);
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

/**
 * The hole of a wall clock stepped back: every part reads the same wall clock, so a ticket, a
 * proof or a challenge that had expired is valid again for the step's length. Time on the wall is
 * injected (`now`); the monotonic clock (performance.now) is faked, so "20 minutes pass" moves both
 * and a step moves the wall alone, as NTP or an operator does.
 */
describe('a wall clock stepped back brings back nothing that had expired', () => {
  const key = generateKeyPairSync('ed25519');
  const ISSUER = 'trusted-ms://lab-1/security';
  const AUDIENCE = 'trusted-ms://lab-1';
  const MINUTE = 60_000;
  let wall = T0;
  const pass = (ms: number) => {
    wall += ms;
    vi.advanceTimersByTime(ms);
  };
  beforeEach(() => {
    wall = T0;
    vi.useFakeTimers({ toFake: ['performance'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  const ticketAt = (iatMs: number, ttlSeconds = 900, jti = randomBytes(16).toString('base64url')) => {
    const iat = Math.floor(iatMs / 1000);
    return issueTicket(
      { kid: 'k1', privateKey: key.privateKey },
      {
        v: 1,
        iss: ISSUER,
        aud: AUDIENCE,
        sub: 'alice',
        role: 'analyst',
        perms: {},
        iat,
        exp: iat + ttlSeconds,
        jti,
        posture: 'paper',
      },
    );
  };
  const verifier = () =>
    new TicketVerifier({
      keys: new Map([['k1', key.publicKey]]),
      issuer: ISSUER,
      audience: AUDIENCE,
      now: () => wall,
    });

  it('a ticket checked once, expired while nobody used it, then the clock stepped back an hour: still expired (not from the cache)', () => {
    const v = verifier();
    const token = ticketAt(T0);
    pass(1_000);
    expect(v.verify(token).sub).toBe('alice');
    pass(20 * MINUTE);
    wall -= HOUR;
    expect(codeOf(() => v.verify(token))).toBe('TICKET_EXPIRED');
  });

  it('a ticket never seen, expired, then the clock stepped back 10 minutes into its lifetime: still expired', () => {
    const v = verifier();
    const token = ticketAt(T0);
    pass(20 * MINUTE);
    wall -= 10 * MINUTE;
    expect(codeOf(() => v.verify(token))).toBe('TICKET_EXPIRED');
  });

  it('after the step back, a ticket issued on the same stepped clock is accepted: nobody is locked out', () => {
    const v = verifier();
    pass(20 * MINUTE);
    wall -= HOUR;
    // The issuer's clock runs on from where it was too (see the security service test below).
    expect(v.verify(ticketAt(T0 + 20 * MINUTE)).sub).toBe('alice');
  });

  it('a proof seen, the clock stepped forward an hour (its nonce forgotten), then back: the replay is refused', () => {
    const proofs = new ProofVerifier({ now: () => wall });
    const req = {
      sessionKey: randomBytes(32),
      method: 'GET',
      path: '/svc/accounts/db/accounts/records',
      body: undefined,
      jti: 'ICEiIyQlJicoKSorLC0uLw',
    };
    const captured = createProof({ ...req, now: () => wall });
    proofs.verify({ ...req, header: captured });
    pass(1_000);
    wall += HOUR;
    // Another request of the same session after the step: the sweep forgets the captured nonce.
    proofs.verify({ ...req, header: createProof({ ...req, now: () => wall }) });
    pass(1_000);
    wall -= HOUR;
    expect(codeOf(() => proofs.verify({ ...req, header: captured }))).toMatch(/^PROOF_(INVALID|REPLAYED)$/);
    // A new session (a login after the step) is not refused: its proofs are stamped on the wall clock.
    const fresh = { ...req, sessionKey: randomBytes(32), jti: 'MDEyMzQ1Njc4OTAxMjM0NTY3' };
    expect(
      codeOf(() => proofs.verify({ ...fresh, header: createProof({ ...fresh, now: () => wall }) })),
    ).toBeUndefined();
  });

  it('a session in use when the clock stepped back an hour: its proofs are refused (it may be a replay) until its user logs in again', () => {
    const proofs = new ProofVerifier({ now: () => wall });
    const req = {
      sessionKey: randomBytes(32),
      method: 'GET',
      path: '/svc/accounts/db/accounts/records',
      body: undefined,
      jti: 'ICEiIyQlJicoKSorLC0uLw',
    };
    const stamped = () => createProof({ ...req, now: () => wall });
    for (let i = 0; i < 5; i++) {
      proofs.verify({ ...req, header: stamped() });
      pass(MINUTE);
    }
    wall -= HOUR;
    let refusal: unknown;
    try {
      proofs.verify({ ...req, header: stamped() });
    } catch (err) {
      refusal = err;
    }
    expect(refusal).toMatchObject({ code: 'PROOF_REPLAYED', reason: 'before-clock-step' });
  });

  it('a proof made after a step back and replayed at once: refused, also while an older proof sits first in the cache (red team)', () => {
    const proofs = new ProofVerifier({ now: () => wall });
    const req = {
      sessionKey: randomBytes(32),
      method: 'GET',
      path: '/svc/accounts/db/accounts/records',
      body: undefined,
      jti: 'ICEiIyQlJicoKSorLC0uLw',
    };
    // A request in the 30 s before the step: its entry stays first in the cache, unexpired.
    proofs.verify({ ...req, header: createProof({ ...req, now: () => wall }) });
    pass(5_000);
    wall -= HOUR;
    // A fresh login's proof after the step, captured and replayed three times.
    const other = { ...req, sessionKey: randomBytes(32), jti: 'MDEyMzQ1Njc4OTAxMjM0NTY3' };
    const captured = createProof({ ...other, now: () => wall });
    expect(codeOf(() => proofs.verify({ ...other, header: captured }))).toBeUndefined();
    for (let i = 0; i < 3; i++)
      expect(codeOf(() => proofs.verify({ ...other, header: captured }))).toBe('PROOF_REPLAYED');
    // A step back of only 20 s, with someone's own proof stamped 29 s ahead sitting first.
    const fresh = new ProofVerifier({ now: () => wall });
    fresh.verify({ ...req, header: createProof({ ...req, now: () => wall + 29_000 }) });
    pass(1_000);
    wall -= 20_000;
    const victim = createProof({ ...other, now: () => wall });
    expect(codeOf(() => fresh.verify({ ...other, header: victim }))).toBeUndefined();
    expect(codeOf(() => fresh.verify({ ...other, header: victim }))).toBe('PROOF_REPLAYED');
  });

  it('a forgotten proof replayed after a forward step of 25 h with one request in it, then a step back: refused (red team)', () => {
    const proofs = new ProofVerifier({ now: () => wall });
    const req = {
      sessionKey: randomBytes(32),
      method: 'GET',
      path: '/svc/accounts/db/accounts/records',
      body: undefined,
      jti: 'ICEiIyQlJicoKSorLC0uLw',
    };
    const other = { ...req, sessionKey: randomBytes(32), jti: 'MDEyMzQ1Njc4OTAxMjM0NTY3' };
    const ok = (r: typeof req) =>
      codeOf(() => proofs.verify({ ...r, header: createProof({ ...r, now: () => wall }) }));
    const captured = createProof({ ...req, now: () => wall });
    expect(codeOf(() => proofs.verify({ ...req, header: captured }))).toBeUndefined();
    // 31 s on, someone else's request: the captured proof leaves the cache, forgotten.
    pass(31_000);
    expect(ok(other)).toBeUndefined();
    // The wall steps 25 h forward, with one request (someone else's again) in it.
    wall += 25 * HOUR;
    pass(1_000);
    expect(ok(other)).toBeUndefined();
    // Back to 10 s short of the real time: the captured proof is inside the window again, and its
    // ticket still valid (the lab clock did not follow the step): its replay must be refused.
    wall -= 25 * HOUR + 10_000;
    expect(codeOf(() => proofs.verify({ ...req, header: captured }))).toBe('PROOF_REPLAYED');
  });

  it('a gateway started, then the clock stepped back an hour: a ticket issued since works; proofs from before its start stay refused', () => {
    const started = wall;
    const proofs = new ProofVerifier({ now: () => wall, notBeforeMs: started });
    const req = {
      sessionKey: randomBytes(32),
      method: 'GET',
      path: '/svc/accounts/db/accounts/records',
      body: undefined,
      jti: 'ICEiIyQlJicoKSorLC0uLw',
    };
    pass(MINUTE);
    wall -= HOUR;
    // Issued after the start by the security service, whose clock ran on; its proofs bear the wall clock.
    const header = createProof({ ...req, now: () => wall });
    expect(
      codeOf(() => proofs.verify({ ...req, header, ticketIssuedAtMs: started + MINUTE })),
    ).toBeUndefined();
    // A ticket from before the start: its proofs stamped before the start may have been accepted by
    // the gateway before this one.
    const older = { ...req, jti: 'MDEyMzQ1Njc4OTAxMjM0NTY3' };
    expect(
      codeOf(() =>
        proofs.verify({
          ...older,
          header: createProof({ ...older, now: () => wall }),
          ticketIssuedAtMs: started - MINUTE,
        }),
      ),
    ).toBe('PROOF_REPLAYED');
  });

  it('a challenge answered after it expired, the clock stepped back an hour meanwhile: CHALLENGE_EXPIRED, both logins', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tms-clock-'));
    const store = openLabStore(join(dir, 'home'));
    try {
      const keys = {
        alice: await generateUserKeyPair('ed25519'),
        bob: await generateUserKeyPair('rsa', 2048),
      };
      for (const [name, k] of Object.entries(keys)) {
        await addUser(store, { name, role: 'analyst', password: `${name}-pw` });
        await addUserKey(store, name, {
          thumbprint: k.thumbprint,
          type: k.type,
          publicKeyPem: k.publicKeyPem,
          createdAt: new Date().toISOString(),
        });
      }
      for (const posture of ['trusted', 'paper'] as const) {
        const registry = new ServiceRegistry(store, defencesFor(posture).attestation);
        await registry.load();
        const signing = generateKeyPairSync('ed25519');
        const app = buildSecurityService({
          labId: 'ab12cd34',
          defences: defencesFor(posture),
          store,
          registry,
          signingKey: { kid: 'k1', privateKey: signing.privateKey },
          sealKey: Buffer.alloc(32, 3),
          labToken: 'lab-token-for-tests-0123456789',
          ticketTtlSeconds: 600,
          challengeTtlSeconds: 30,
          now: () => wall,
        });
        await app.listen({ host: '127.0.0.1', port: 0 });
        try {
          const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
          let id: string;
          let signature: string;
          if (posture === 'trusted') {
            const c = await jsonRequest<Challenge>(`${url}/v1/auth/challenge`, {
              body: { user: 'alice', password: 'alice-pw', clientKey: newExchangeKeyPair().publicKeyRaw },
            });
            id = c.id;
            signature = signatureToWire(signChallenge(keys.alice.privateKey, c));
          } else {
            const c = await jsonRequest<{ id: string; ticket: string }>(`${url}/v1/auth/challenge`, {
              body: { user: 'bob', password: 'bob-pw' },
            });
            id = c.id;
            signature = paperEncrypt(keys.bob.privateKey, Buffer.from(c.ticket, 'base64url')).toString(
              'base64url',
            );
          }
          pass(MINUTE);
          wall -= HOUR;
          await expect(
            jsonRequest(`${url}/v1/auth/verify`, { body: { id, signature } }),
            posture,
          ).rejects.toMatchObject({
            code: 'CHALLENGE_EXPIRED',
          });
        } finally {
          await app.close();
        }
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a password check remembered by the gateway (request:basic) for a minute: not an hour longer after a step back', async () => {
    // The gateway reads no injected clock here: the process's own Date is stepped.
    vi.useRealTimers();
    vi.useFakeTimers({ toFake: ['performance', 'Date'], now: T0 });
    let checks = 0;
    const basic = new BasicAtGateway({
      checkPassword: async (user) => {
        checks += 1;
        return { user, role: 'analyst', perms: {} };
      },
      cacheMs: MINUTE,
    });
    const header = `Basic ${Buffer.from('alice:alice-pw').toString('base64')}`;
    await basic.principal(header);
    vi.setSystemTime(Date.now() - HOUR);
    vi.advanceTimersByTime(2 * MINUTE);
    await basic.principal(header);
    expect(checks).toBe(2);
  });
});
