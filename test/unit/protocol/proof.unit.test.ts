import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { TrustedMsError } from '../../../src/errors.js';
import {
  createProof,
  PROOF_HEADER,
  type ProofBody,
  ProofError,
  ProofVerifier,
  proofCanonicalString,
} from '../../../src/protocol/proof.js';

const T0 = 1_767_225_600_123;
const JTI = 'ICEiIyQlJicoKSorLC0uLw';
const KEY = randomBytes(32);
const REQ: { sessionKey: Buffer; method: string; path: string; body: ProofBody; jti: string } = {
  sessionKey: KEY,
  method: 'POST',
  path: '/svc/orders/v1/orders?limit=10',
  body: Buffer.from('{"item":"book","qty":1}'),
  jti: JTI,
};

function errorOf(fn: () => unknown): ProofError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ProofError) return err;
    throw err;
  }
  throw new Error('expected a ProofError');
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

/** A verifier on a clock the test moves. */
function setUp(opts: { windowMs?: number; maxEntries?: number; maxEntriesPerUser?: number } = {}) {
  const clock = { now: T0 };
  const verifier = new ProofVerifier({ ...opts, now: () => clock.now });
  const proof = (over: Partial<typeof REQ> = {}, t = clock.now) =>
    createProof({ ...REQ, ...over, now: () => t });
  return { clock, verifier, proof };
}

describe('createProof and ProofVerifier', () => {
  it('accepts a fresh proof, with a body, a string body or none', () => {
    const { verifier, proof } = setUp();
    const header = proof();
    expect(header).toMatch(/^v1\.1767225600123\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}$/);
    expect(PROOF_HEADER).toBe('tms-proof');
    expect(codeOf(() => verifier.verify({ ...REQ, header }))).toBeUndefined();
    const text = proof({ body: '{"item":"book","qty":1}' });
    expect(codeOf(() => verifier.verify({ ...REQ, header: text }))).toBeUndefined(); // same bytes
    const get = { ...REQ, method: 'GET', body: undefined };
    expect(codeOf(() => verifier.verify({ ...get, header: proof(get) }))).toBeUndefined();
    expect(
      codeOf(() => verifier.verify({ ...get, body: Buffer.alloc(0), header: proof(get) })),
    ).toBeUndefined();
  });

  it('uses a fresh nonce every time', () => {
    const { proof } = setUp();
    expect(proof().split('.')[2]).not.toBe(proof().split('.')[2]);
  });

  it.each([
    ['method', { method: 'PUT' }],
    ['method case', { method: 'post' }],
    ['path', { path: '/svc/orders/v1/orders?limit=11' }],
    ['path without query', { path: '/svc/orders/v1/orders' }],
    ['service', { path: '/svc/payments/v1/orders?limit=10' }],
    ['body', { body: Buffer.from('{"item":"book","qty":9}') }],
    ['empty body', { body: Buffer.alloc(0) }],
    ['jti', { jti: 'JCEiIyQlJicoKSorLC0uLw' }],
    ['session key', { sessionKey: randomBytes(32) }],
  ])('refuses a proof checked against another %s with PROOF_INVALID', (_name, change) => {
    const { verifier, proof } = setUp();
    const header = proof();
    const err = errorOf(() => verifier.verify({ ...REQ, ...change, header }));
    expect(err.code).toBe('PROOF_INVALID');
    expect(err.message).toBe('proof verification failed');
    // Nothing was remembered: the genuine request still goes through.
    expect(codeOf(() => verifier.verify({ ...REQ, header }))).toBeUndefined();
  });

  it('refuses a proof outside the window, on both sides, with PROOF_INVALID', () => {
    const { verifier, proof } = setUp();
    for (const t of [T0 - 30_001, T0 + 30_001, T0 - 3_600_000, T0 + 3_600_000]) {
      const err = errorOf(() => verifier.verify({ ...REQ, header: proof({}, t) }));
      expect(err.code).toBe('PROOF_INVALID');
      expect(err.reason).toBe('outside-window');
    }
    for (const t of [T0 - 30_000, T0 + 30_000]) {
      expect(codeOf(() => verifier.verify({ ...REQ, header: proof({}, t) }))).toBeUndefined();
    }
    const narrow = new ProofVerifier({ windowMs: 1_000, now: () => T0 });
    expect(codeOf(() => narrow.verify({ ...REQ, header: proof({}, T0 - 1_001) }))).toBe('PROOF_INVALID');
  });

  it('refuses the same proof twice with PROOF_REPLAYED', () => {
    const { clock, verifier, proof } = setUp();
    const header = proof();
    verifier.verify({ ...REQ, header });
    clock.now += 29_000;
    const err = errorOf(() => verifier.verify({ ...REQ, header }));
    expect(err.code).toBe('PROOF_REPLAYED');
    expect(err.reason).toBe('replayed');
  });

  it('drops the nonce once the window has passed; the old proof is then simply stale', () => {
    const { clock, verifier, proof } = setUp();
    const header = proof();
    verifier.verify({ ...REQ, header });
    expect(verifier.size).toBe(1);
    clock.now = T0 + 30_001;
    verifier.verify({ ...REQ, header: proof() });
    expect(verifier.size).toBe(1); // the first pair went, the new one came
    expect(errorOf(() => verifier.verify({ ...REQ, header })).reason).toBe('outside-window');
  });

  it('refuses missing and malformed headers with PROOF_INVALID', () => {
    const { verifier, proof } = setUp();
    const good = proof();
    const [, t, nonce, mac] = good.split('.') as [string, string, string, string];
    const cases: [unknown, string][] = [
      [undefined, 'missing'],
      ['', 'missing'],
      [`v2.${t}.${nonce}.${mac}`, 'malformed'],
      [`V1.${t}.${nonce}.${mac}`, 'malformed'],
      [`v1.0${t}.${nonce}.${mac}`, 'malformed'],
      [`v1.${t}.${nonce}.${mac}.`, 'malformed'],
      [`v1.${t}.${nonce}`, 'malformed'],
      [`v1.${t}.${nonce}.${mac.slice(0, -1)}`, 'malformed'],
      [`v1.${t}.${nonce}.${mac}=`, 'malformed'],
      [`v1.${t}.${nonce.slice(0, -1)}.${mac}`, 'malformed'],
      [`v1.${t}.${nonce.slice(0, -1)}B.${mac}`, 'malformed'], // stray bits: not canonical
      [`v1.${t}.${nonce}.${mac.slice(0, -1)}B`, 'malformed'],
      [` ${good}`, 'malformed'],
      [`${good}\n`, 'malformed'],
      [`v1.${t}.${nonce}.${'A'.repeat(43)}`, 'bad-mac'],
      [`v1.${Number(t) + 1}.${nonce}.${mac}`, 'bad-mac'],
      ['x'.repeat(10_000), 'malformed'],
      [42, 'malformed'],
    ];
    for (const [header, reason] of cases) {
      const err = errorOf(() => verifier.verify({ ...REQ, header: header as string }));
      expect(err.code).toBe('PROOF_INVALID');
      expect(err.reason).toBe(reason);
      expect(err.message).toBe('proof verification failed');
    }
  });

  it('refuses a malformed request on either side', () => {
    const { verifier, proof } = setUp();
    const header = proof();
    for (const change of [
      { method: 'GET /' },
      { path: 'svc/orders' },
      { path: '/svc/orders\n' },
      { path: '/svc/or ders' },
      { jti: 'short' },
      { sessionKey: randomBytes(16) },
    ]) {
      expect(codeOf(() => createProof({ ...REQ, ...change }))).toBe('INVALID_INPUT');
      expect(codeOf(() => verifier.verify({ ...REQ, ...change, header }))).toBe('PROOF_INVALID');
    }
  });

  it('when the replay cache is full, refuses new proofs instead of forgetting old ones', () => {
    const { clock, verifier, proof } = setUp({ maxEntries: 2 });
    const first = proof();
    verifier.verify({ ...REQ, header: first });
    verifier.verify({ ...REQ, header: proof() });
    const err = errorOf(() => verifier.verify({ ...REQ, header: proof() }));
    expect(err.code).toBe('RATE_LIMITED');
    expect(err.reason).toBe('replay-cache-full');
    expect(verifier.size).toBe(2);
    expect(errorOf(() => verifier.verify({ ...REQ, header: first })).code).toBe('PROOF_REPLAYED');
    clock.now += 30_001;
    expect(codeOf(() => verifier.verify({ ...REQ, header: proof() }))).toBeUndefined();
    expect(verifier.size).toBe(1);
  });

  it('refuses a user over its replay-cache quota before storing its proof, and nobody else', () => {
    const { clock, verifier, proof } = setUp({ maxEntries: 5, maxEntriesPerUser: 2 });
    const mallory = { ...REQ, jti: 'bWFsbG9yeS10aWNrZXQtMQ' };
    const mine = () => proof({ jti: mallory.jti });
    verifier.verify({ ...mallory, user: 'mallory', header: mine() });
    verifier.verify({ ...mallory, user: 'mallory', header: mine() });
    // Proofs stamped at the window's far edge stay longest: still only its own share.
    for (const t of [clock.now, clock.now + 30_000]) {
      const err = errorOf(() =>
        verifier.verify({ ...mallory, user: 'mallory', header: proof({ jti: mallory.jti }, t) }),
      );
      expect(err.code).toBe('RATE_LIMITED');
      expect(err.reason).toBe('replay-quota');
    }
    expect(verifier.sizeOf('mallory')).toBe(2);
    expect(verifier.size).toBe(2);
    // Another user still has the room mallory could not take.
    for (let i = 0; i < 2; i++)
      expect(codeOf(() => verifier.verify({ ...REQ, user: 'alice', header: proof() }))).toBeUndefined();
    expect(verifier.sizeOf('alice')).toBe(2);
    // The global cap still fails closed once all shares together fill it.
    verifier.verify({
      ...REQ,
      jti: 'Ym9iLXRpY2tldC0xMjM0NQ',
      user: 'bob',
      header: proof({ jti: 'Ym9iLXRpY2tldC0xMjM0NQ' }),
    });
    const full = errorOf(() =>
      verifier.verify({
        ...REQ,
        jti: 'Ym9iLXRpY2tldC0xMjM0NQ',
        user: 'bob',
        header: proof({ jti: 'Ym9iLXRpY2tldC0xMjM0NQ' }),
      }),
    );
    expect(full.reason).toBe('replay-cache-full');
    // Mallory's share comes back when its proofs leave the window.
    clock.now += 30_001;
    expect(codeOf(() => verifier.verify({ ...mallory, user: 'mallory', header: mine() }))).toBeUndefined();
    expect(verifier.sizeOf('mallory')).toBe(1);
  });

  it('refuses bad options', () => {
    expect(codeOf(() => new ProofVerifier({ windowMs: 0 }))).toBe('INVALID_INPUT');
    expect(codeOf(() => new ProofVerifier({ maxEntries: 0 }))).toBe('INVALID_INPUT');
    expect(codeOf(() => new ProofVerifier({ maxEntriesPerUser: 0 }))).toBe('INVALID_INPUT');
  });
});

describe('the worked example of docs/protocol.md', () => {
  const doc = readFileSync(new URL('../../../docs/protocol.md', import.meta.url), 'utf8');
  const block = (name: string) => {
    const m = new RegExp(`<!-- proof-example: ${name} -->\\n\`\`\`text\\n([\\s\\S]*?\\n)\`\`\`\\n`).exec(doc);
    if (!m) throw new Error(`docs/protocol.md has no proof example ${name}`);
    return m[1]!;
  };
  const sessionKey = Buffer.from('6991b30e6d6b5ace0f7125aca7e52f5e216690455a8725131e79b5851db6f474', 'hex');
  const nonce = 'MDEyMzQ1Njc4OTo7PD0-Pw';

  it('shows the exact canonical string', () => {
    expect(Buffer.from(nonce, 'base64url').toString('hex')).toBe('303132333435363738393a3b3c3d3e3f');
    expect(block('canonical')).toBe(proofCanonicalString('POST', REQ.path, T0, nonce, REQ.body, JTI));
  });

  it('shows a header that verifies', () => {
    const header = block('header')
      .trim()
      .replace(/^tms-proof: /, '');
    const verifier = new ProofVerifier({ now: () => T0 });
    expect(codeOf(() => verifier.verify({ ...REQ, sessionKey, header }))).toBeUndefined();
  });
});
