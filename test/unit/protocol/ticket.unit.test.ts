import { createHmac, generateKeyPairSync, type KeyObject, randomBytes, sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { TrustedMsError } from '../../../src/errors.js';
import { sealSessionKey } from '../../../src/protocol/session-key.js';
import {
  decodeTicketUnverified,
  issueTicket,
  MAX_TICKET_CHARS,
  type TicketClaims,
  TicketError,
  TicketVerifier,
  type TicketVerifierOptions,
} from '../../../src/protocol/ticket.js';

const ISSUER = 'trusted-ms://lab-1234/security';
const AUDIENCE = 'trusted-ms://lab-1234';
const IAT = 1_767_225_600;
const EXP = IAT + 900;
const DURING = () => (IAT + 60) * 1000;

const service = generateKeyPairSync('ed25519');
const other = generateKeyPairSync('ed25519');
const KEY = { kid: 'security-1', privateKey: service.privateKey };
const KEYS: ReadonlyMap<string, KeyObject> = new Map([['security-1', service.publicKey]]);

const JTI = 'ICEiIyQlJicoKSorLC0uLw';
const TRUSTED: TicketClaims = {
  v: 1,
  iss: ISSUER,
  aud: AUDIENCE,
  sub: 'alice',
  role: 'analyst',
  perms: { orders: ['query', 'read'], reports: ['read'] },
  iat: IAT,
  exp: EXP,
  jti: JTI,
  posture: 'trusted',
  cnf: {
    jkt: 'kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k',
    sk: sealSessionKey(randomBytes(32), randomBytes(32), JTI),
  },
};
const { cnf: _cnf, ...withoutCnf } = TRUSTED;
const PAPER: TicketClaims = { ...withoutCnf, posture: 'paper' };

function verifier(opts: Partial<TicketVerifierOptions> = {}): TicketVerifier {
  return new TicketVerifier({ keys: KEYS, issuer: ISSUER, audience: AUDIENCE, now: DURING, ...opts });
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof TrustedMsError) return err.code;
    throw err;
  }
  return undefined;
}

function errorOf(fn: () => unknown): TicketError {
  try {
    fn();
  } catch (err) {
    if (err instanceof TicketError) return err;
    throw err;
  }
  throw new Error('expected a TicketError');
}

const b64 = (x: unknown) => Buffer.from(JSON.stringify(x)).toString('base64url');
const parts = (token: string) => token.split('.') as [string, string, string];
const payloadOf = (token: string) => JSON.parse(Buffer.from(parts(token)[1], 'base64url').toString('utf8'));

describe('issueTicket and TicketVerifier', () => {
  it('round-trips a trusted and a paper ticket', () => {
    for (const claims of [TRUSTED, PAPER]) {
      const token = issueTicket(KEY, claims);
      expect(token).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{86}$/);
      const header = JSON.parse(Buffer.from(parts(token)[0], 'base64url').toString('utf8'));
      expect(header).toEqual({ alg: 'EdDSA', typ: 'tms-ticket+jwt', kid: 'security-1' });
      expect(verifier().verify(token)).toEqual(claims);
    }
  });

  it('returns frozen claims whose perms have no prototype', () => {
    const claims = verifier().verify(issueTicket(KEY, TRUSTED));
    expect(Object.isFrozen(claims)).toBe(true);
    expect(Object.isFrozen(claims.perms)).toBe(true);
    expect(Object.isFrozen(claims.perms.orders)).toBe(true);
    expect(claims.perms.constructor).toBeUndefined();
  });

  it('refuses to issue malformed claims, with INVALID_INPUT', () => {
    const bad: unknown[] = [
      { ...TRUSTED, cnf: undefined },
      { ...PAPER, cnf: TRUSTED.cnf },
      { ...TRUSTED, exp: IAT },
      { ...TRUSTED, perms: { orders: ['delete'] } },
      { ...TRUSTED, perms: { orders: ['read', 'read'] } },
      { ...TRUSTED, perms: JSON.parse('{"__proto__":["read"]}') },
      { ...TRUSTED, sub: 'Alice' },
      { ...TRUSTED, role: 'admin\n' },
      { ...TRUSTED, jti: 'short' },
      { ...TRUSTED, v: 2 },
      { ...TRUSTED, extra: true },
    ];
    for (const claims of bad)
      expect(codeOf(() => issueTicket(KEY, claims as TicketClaims))).toBe('INVALID_INPUT');
    expect(codeOf(() => issueTicket({ kid: 'bad kid', privateKey: service.privateKey }, TRUSTED))).toBe(
      'INVALID_INPUT',
    );
    expect(codeOf(() => issueTicket({ kid: 'k', privateKey: service.publicKey }, TRUSTED))).toBe(
      'KEY_INVALID',
    );
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    expect(codeOf(() => issueTicket({ kid: 'k', privateKey: rsa.privateKey }, TRUSTED))).toBe('KEY_INVALID');
  });
});

describe('TicketVerifier refusals', () => {
  const token = issueTicket(KEY, TRUSTED);
  const [h, p, s] = parts(token);

  function expectInvalid(bad: unknown, v = verifier()): TicketError {
    const err = errorOf(() => v.verify(bad as string));
    expect(err.code).toBe('TICKET_INVALID');
    expect(err.message).toBe('ticket verification failed');
    return err;
  }

  it('refuses alg none, with or without a signature', () => {
    const none = b64({ alg: 'none', typ: 'tms-ticket+jwt', kid: 'security-1' });
    expectInvalid(`${none}.${p}.`);
    expectInvalid(`${none}.${p}.${s}`);
    expect(expectInvalid(`${none}.${p}.${s}`).reason).toBe('algorithm not allowed');
  });

  it('refuses HS256 "signed" with the public key bytes (algorithm confusion)', () => {
    const pem = service.publicKey.export({ type: 'spki', format: 'pem' });
    const der = service.publicKey.export({ type: 'spki', format: 'der' });
    const raw = der.subarray(-32);
    for (const secret of [pem, der, raw]) {
      const hs = b64({ alg: 'HS256', typ: 'tms-ticket+jwt', kid: 'security-1' });
      const mac = createHmac('sha256', secret).update(`${hs}.${p}`).digest('base64url');
      expectInvalid(`${hs}.${p}.${mac}`);
    }
  });

  it('refuses other algorithms, header shapes and types', () => {
    for (const header of [
      { alg: 'RS256', typ: 'tms-ticket+jwt', kid: 'security-1' },
      { alg: 'eddsa', typ: 'tms-ticket+jwt', kid: 'security-1' },
      { alg: 'EdDSA', typ: 'JWT', kid: 'security-1' },
      { alg: 'EdDSA', typ: 'tms-ticket+jwt' },
      { alg: 'EdDSA', typ: 'tms-ticket+jwt', kid: 'security-1', jwk: {} },
      { alg: 'EdDSA', typ: 'tms-ticket+jwt', kid: 'security-1', crit: ['b64'] },
      ['EdDSA'],
    ]) {
      const hh = b64(header);
      const sig = sign(null, Buffer.from(`${hh}.${p}`), service.privateKey).toString('base64url');
      expectInvalid(`${hh}.${p}.${sig}`);
    }
  });

  it('refuses an unknown kid, and a key map holding a non-Ed25519 key', () => {
    const hh = b64({ alg: 'EdDSA', typ: 'tms-ticket+jwt', kid: 'security-2' });
    const sig = sign(null, Buffer.from(`${hh}.${p}`), service.privateKey).toString('base64url');
    expect(expectInvalid(`${hh}.${p}.${sig}`).reason).toBe('unknown kid');
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    expectInvalid(token, verifier({ keys: new Map([['security-1', rsa.publicKey]]) }));
  });

  it('refuses a ticket signed by another key', () => {
    const forged = issueTicket({ kid: 'security-1', privateKey: other.privateKey }, TRUSTED);
    expect(expectInvalid(forged).reason).toBe('bad signature');
  });

  it('refuses a tampered payload: role edited to admin, re-encoded, signature kept', () => {
    const claims = payloadOf(token);
    claims.role = 'admin';
    claims.perms = { '*': ['query', 'read', 'write'] };
    expect(expectInvalid(`${h}.${b64(claims)}.${s}`).reason).toBe('bad signature');
    claims.role = 'analyst';
    claims.perms = TRUSTED.perms;
    claims.sub = 'bob';
    expectInvalid(`${h}.${b64(claims)}.${s}`);
  });

  it('refuses truncated, oversize and malformed tokens', () => {
    const bad: unknown[] = [
      token.slice(0, -1),
      token.slice(0, -2),
      `${h}.${p}`,
      `${h}.${p}.${s}.`,
      `${h}.${p}.${s}.${s}`,
      `${h}..${s}`,
      `${h}.${p}.${s}=`,
      `${h}=.${p}.${s}`,
      ` ${token}`,
      `${token}\n`,
      token.replace(/\./g, ' '),
      `${h}.${p}${'A'.repeat(MAX_TICKET_CHARS)}.${s}`,
      'x'.repeat(MAX_TICKET_CHARS + 1),
      `${h}.${b64('not an object')}.${s}`,
      `${h}.${Buffer.from('{"v":1,').toString('base64url')}.${s}`,
      42,
      {},
    ];
    for (const t of bad) expectInvalid(t);
    expect(expectInvalid('x'.repeat(MAX_TICKET_CHARS + 1)).reason).toBe('too long');
  });

  it('says TICKET_MISSING for no ticket', () => {
    expect(codeOf(() => verifier().verify(''))).toBe('TICKET_MISSING');
    expect(codeOf(() => verifier().verify(undefined as unknown as string))).toBe('TICKET_MISSING');
  });

  it('refuses another issuer, audience or posture', () => {
    expect(expectInvalid(token, verifier({ issuer: 'trusted-ms://lab-9999/security' })).reason).toBe(
      'issuer',
    );
    expect(expectInvalid(token, verifier({ audience: 'trusted-ms://lab-9999' })).reason).toBe('audience');
    expect(expectInvalid(issueTicket(KEY, PAPER), verifier({ posture: 'trusted' })).reason).toBe('posture');
    expect(codeOf(() => verifier({ audience: undefined, posture: 'trusted' }).verify(token))).toBeUndefined();
  });

  it('refuses a ticket issued in the future, unless within the leeway', () => {
    const early = () => (IAT - 10) * 1000;
    expect(expectInvalid(token, verifier({ now: early })).reason).toBe('issued in the future');
    expect(codeOf(() => verifier({ now: early, leewaySeconds: 30 }).verify(token))).toBeUndefined();
  });

  it('refuses an expired ticket with TICKET_EXPIRED (frozen clock), the boundary included', () => {
    // Made at DURING and stepped forward to the last valid millisecond: a verifier made with a clock
    // frozen there would carry it forward by the real time until `verify` (forwardOnlyClock), which
    // on a busy machine is a millisecond or more, and the boundary would move.
    let wall = DURING();
    const atLastMs = verifier({ now: () => wall });
    wall = EXP * 1000 - 1;
    expect(codeOf(() => atLastMs.verify(token))).toBeUndefined();
    expect(codeOf(() => verifier({ now: () => EXP * 1000 }).verify(token))).toBe('TICKET_EXPIRED');
    expect(codeOf(() => verifier({ now: () => EXP * 1000 + 86_400_000 }).verify(token))).toBe(
      'TICKET_EXPIRED',
    );
    expect(
      codeOf(() => verifier({ now: () => EXP * 1000 + 29_000, leewaySeconds: 30 }).verify(token)),
    ).toBeUndefined();
    expect(codeOf(() => verifier({ now: () => Number.NaN }).verify(token))).toBe('TICKET_INVALID');
  });

  it('judges the signature before expiry, issuer and audience', () => {
    const forged = issueTicket({ kid: 'security-1', privateKey: other.privateKey }, TRUSTED);
    const v = verifier({ now: () => EXP * 1000 + 1, issuer: 'x', audience: 'y' });
    expect(expectInvalid(forged, v).reason).toBe('bad signature');
  });
});

describe('TicketVerifier cache', () => {
  it('does not check the signature again for a cached ticket (the key map is gone)', () => {
    let keys: ReadonlyMap<string, KeyObject> = KEYS;
    let lookups = 0;
    const v = verifier({
      keys: () => {
        lookups++;
        return keys;
      },
    });
    const token = issueTicket(KEY, TRUSTED);
    const first = v.verify(token);
    expect(lookups).toBe(1);
    keys = new Map();
    expect(v.verify(token)).toBe(first);
    expect(lookups).toBe(1);
    expect(v.size).toBe(1);
    // An uncached ticket now fails: the key map really is empty.
    expect(codeOf(() => v.verify(issueTicket(KEY, PAPER)))).toBe('TICKET_INVALID');
    v.clear();
    expect(codeOf(() => v.verify(token))).toBe('TICKET_INVALID');
  });

  it('refuses a cached ticket once it expires, and forgets it', () => {
    let now = DURING();
    const v = verifier({ now: () => now });
    const token = issueTicket(KEY, TRUSTED);
    v.verify(token);
    expect(v.size).toBe(1);
    now = EXP * 1000;
    expect(codeOf(() => v.verify(token))).toBe('TICKET_EXPIRED');
    expect(v.size).toBe(0);
    expect(codeOf(() => v.verify(token))).toBe('TICKET_EXPIRED');
  });

  it('does not cache failures', () => {
    const v = verifier({ issuer: 'trusted-ms://lab-9999/security' });
    const token = issueTicket(KEY, TRUSTED);
    expect(codeOf(() => v.verify(token))).toBe('TICKET_INVALID');
    expect(v.size).toBe(0);
  });

  it('keeps at most maxEntries tickets, dropping the oldest', () => {
    let lookups = 0;
    const v = verifier({
      maxEntries: 3,
      keys: () => {
        lookups++;
        return KEYS;
      },
    });
    const tokens = Array.from({ length: 5 }, (_, i) =>
      issueTicket(KEY, { ...TRUSTED, jti: `${JTI.slice(0, -1)}${'ABCDE'[i]}` }),
    );
    for (const t of tokens) v.verify(t);
    expect(v.size).toBe(3);
    expect(lookups).toBe(5);
    v.verify(tokens[4]!); // newest: cached
    expect(lookups).toBe(5);
    v.verify(tokens[0]!); // oldest: was dropped, verified again
    expect(lookups).toBe(6);
    expect(v.size).toBe(3);
    const none = verifier({ maxEntries: 0 });
    none.verify(tokens[0]!);
    expect(none.size).toBe(0);
  });
});

describe('decodeTicketUnverified', () => {
  it('reads header and claims without checking the signature or time', () => {
    const forged = issueTicket({ kid: 'whatever', privateKey: other.privateKey }, TRUSTED);
    const { header, claims } = decodeTicketUnverified(forged);
    expect(header.kid).toBe('whatever');
    expect(claims.exp).toBe(EXP);
  });

  it('refuses malformed tokens with TICKET_INVALID', () => {
    expect(codeOf(() => decodeTicketUnverified('a.b'))).toBe('TICKET_INVALID');
    expect(codeOf(() => decodeTicketUnverified('a.b.c'))).toBe('TICKET_INVALID');
  });
});
