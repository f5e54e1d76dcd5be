import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ADMIT_ANY, AttestedOnly, attestationGate } from '../../../src/defences/attestation.js';
import { AttestationTable } from '../../../src/defences/attestation-table.js';
import {
  AddressAndUserLimits,
  gatewayLimits,
  NO_LIMITS,
  securityLimits,
} from '../../../src/defences/limits.js';
import { PLAIN_LINKS } from '../../../src/defences/links.js';
import { RateLimiter } from '../../../src/defences/rate-limit.js';
import { requestHeaders } from '../../../src/defences/request/client.js';
import { GATEWAY_VOUCHES } from '../../../src/defences/request/service.js';
import { SmartLockout } from '../../../src/defences/smart-lockout.js';
import { isTrustedMsError } from '../../../src/errors.js';
import { PROOF_HEADER } from '../../../src/protocol/proof.js';
import { issueTicket } from '../../../src/protocol/ticket.js';

const codeOf = async (f: () => Promise<unknown>) =>
  f().then(
    () => undefined,
    (e) => (isTrustedMsError(e) ? e.code : 'other'),
  );

describe('attestation gate', () => {
  const table = new AttestationTable([
    { name: 'orders', state: 'trusted' },
    { name: 'billing', state: 'untrusted' },
  ]);
  it('attestation:none admits any service; self and measured only attested ones', async () => {
    expect(attestationGate('none', table)).toBe(ADMIT_ANY);
    await expect(ADMIT_ANY.admit('billing')).resolves.toBeUndefined();
    for (const choice of ['self', 'measured'] as const) {
      const gate = attestationGate(choice, table);
      expect(gate).toBeInstanceOf(AttestedOnly);
      await expect(gate.admit('orders')).resolves.toBeUndefined();
      expect(await codeOf(() => gate.admit('billing'))).toBe('SERVICE_UNTRUSTED');
      expect(await codeOf(() => gate.admit('unknown'))).toBe('SERVICE_UNTRUSTED');
    }
  });
});

describe('limits', () => {
  it('limits:off meters nobody; limits:on refuses an address over its rate and a user over its own', async () => {
    expect(gatewayLimits('off', {} as never)).toBe(NO_LIMITS);
    for (let i = 0; i < 100; i++) NO_LIMITS.admitClient('127.0.0.2');
    let t = 0;
    const on = new AddressAndUserLimits({
      perUser: new RateLimiter(1, 1, () => t),
      perClient: new RateLimiter(1, 2, () => t),
    });
    on.admitClient('127.0.0.2');
    on.admitClient('127.0.0.2');
    expect(() => on.admitClient('127.0.0.2')).toThrow(/too many requests/);
    on.admitClient('127.0.0.3');
    await on.admitUser('mallory');
    expect(await codeOf(() => on.admitUser('mallory'))).toBe('RATE_LIMITED');
    await on.admitUser('alice');
    t += 1000;
    await on.admitUser('mallory');
  });

  it('limits:on at the security service: a per-address login limit, a smart lock-out and uniform checks; off: none', async () => {
    expect(securityLimits('off')).toEqual({ uniformChecks: false });
    const on = securityLimits('on');
    expect(on.perClient).toBeInstanceOf(RateLimiter);
    expect(on.uniformChecks).toBe(true);
    const lockout = on.lockout as SmartLockout;
    expect(lockout).toBeInstanceOf(SmartLockout);
    for (let i = 0; i < 5; i++) lockout.failed('alice', '127.0.0.2');
    expect(await codeOf(() => lockout.check('alice', '127.0.0.2'))).toBe('ACCOUNT_LOCKED');
    // Smart: the source is locked out for alice, alice is not.
    expect(await codeOf(() => lockout.check('alice', '127.0.0.1'))).toBeUndefined();
  });
});

describe('request authentication, client and service sides', () => {
  it('the client sends what its session holds: basic, a bearer ticket, or a ticket and a fresh proof', () => {
    expect(requestHeaders({ user: 'a', basic: 'YTpi' }, 'GET', '/svc/x', undefined)).toEqual({
      authorization: 'Basic YTpi',
    });
    expect(() => requestHeaders({ user: 'a' }, 'GET', '/svc/x', undefined)).toThrow(/no ticket/);
    const iat = Math.floor(Date.now() / 1000);
    const ticket = issueTicket(
      { kid: 'k1', privateKey: generateKeyPairSync('ed25519').privateKey },
      {
        v: 1,
        iss: 'spiffe://lab/security',
        aud: 'spiffe://lab/gateway',
        sub: 'a',
        role: 'r',
        perms: {},
        iat,
        exp: iat + 60,
        jti: randomBytes(16).toString('base64url'),
        posture: 'paper',
      },
    );
    expect(requestHeaders({ user: 'a', ticket }, 'GET', '/svc/x', undefined)).toEqual({
      authorization: `Bearer ${ticket}`,
    });
    const bound = requestHeaders(
      { user: 'a', ticket, sessionKey: Buffer.alloc(32, 1).toString('base64url') },
      'GET',
      '/svc/x',
      undefined,
    );
    expect(bound[PROOF_HEADER]).toMatch(/\S/);
  });

  it('request:basic at a service believes the gateway headers, and refuses a request without them', () => {
    const p = GATEWAY_VOUCHES.authenticate({
      'x-tms-user': 'alice',
      'x-tms-role': 'admin',
      'x-tms-perms': '{"orders":["read"]}',
    });
    expect(p).toMatchObject({ user: 'alice', perms: { orders: ['read'] } });
    expect(() => GATEWAY_VOUCHES.authenticate({})).toThrow(/no user/);
    expect(() =>
      GATEWAY_VOUCHES.authenticate({ 'x-tms-user': 'a', 'x-tms-role': 'r', 'x-tms-perms': '{"o":["fly"]}' }),
    ).toThrow(/malformed/);
  });

  it('links:plain has no TLS and knows nothing of the caller', () => {
    expect(PLAIN_LINKS.serverTls).toBeUndefined();
    expect(PLAIN_LINKS.connect('orders')).toBeUndefined();
  });
});

describe('the attestation table: the answer asked last wins, whatever order answers arrive in', () => {
  const deferred = () => {
    let resolve!: (v: { name: string; state: 'trusted' | 'untrusted' }[]) => void;
    const promise = new Promise<{ name: string; state: 'trusted' | 'untrusted' }[]>((r) => {
      resolve = r;
    });
    return { promise, resolve };
  };

  it('an old poll landing first does not drop the newer fetch (the gateway served an untrusted service)', async () => {
    const table = new AttestationTable([{ name: 'customers', state: 'trusted' }]);
    const poll = deferred(); // asked before the service was found untrusted
    const prompted = deferred(); // asked after (the fetch a push prompts)
    const polled = table.refresh(() => poll.promise);
    const fetched = table.refresh(() => prompted.promise);
    poll.resolve([{ name: 'customers', state: 'trusted' }]);
    expect(await polled).toBe(true);
    prompted.resolve([{ name: 'customers', state: 'untrusted' }]);
    // Before: dropped, as "a change happened meanwhile", and the table said trusted until the next poll.
    expect(await fetched).toBe(true);
    expect(table.state('customers')).toBe('untrusted');
  });

  it('an old poll landing last does not bring the old verdict back', async () => {
    const table = new AttestationTable([{ name: 'customers', state: 'trusted' }]);
    const poll = deferred();
    const polled = table.refresh(() => poll.promise);
    table.replace([{ name: 'customers', state: 'untrusted' }]); // a push with the new table
    poll.resolve([{ name: 'customers', state: 'trusted' }]);
    expect(await polled).toBe(false);
    expect(table.state('customers')).toBe('untrusted');
  });
});
