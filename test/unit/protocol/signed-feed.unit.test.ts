import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { PLAIN_FEEDS, SignedFeeds } from '../../../src/defences/feeds.js';
import { isTrustedMsError } from '../../../src/errors.js';
import { parseRevocationList } from '../../../src/protocol/revocation-list.js';
import {
  FEED_FIELD,
  type FeedTrust,
  FeedVerifier,
  feedTrustKey,
  labFeedMaxAge,
  signFeed,
} from '../../../src/protocol/signed-feed.js';
import { FeedSigner } from '../../../src/services/security/feed-signer.js';

const LAB = 'lab12345';
const MAX_AGE = 30_000;

function keyPair() {
  const { privateKey } = generateKeyPairSync('ed25519');
  const trust = feedTrustKey(privateKey);
  return { privateKey, kid: trust.kid, trust };
}

const list = (n: number, users: Record<string, { notBefore: number; revoked: boolean }> = {}) => ({
  version: `epoch.${n}`,
  users,
  quarantined: [],
  untrusted: [],
});

function setup(t0 = 1_000_000) {
  const key = keyPair();
  let now = t0;
  const trust: FeedTrust = { keys: [key.trust], maxAgeMs: MAX_AGE };
  const verifier = new FeedVerifier(trust, LAB, () => now);
  const answer = (
    version: number,
    issuedAt: number,
    body: unknown,
    over: Partial<Parameters<typeof signFeed>[1]> = {},
  ) => ({
    [FEED_FIELD]: signFeed(key, { lab: LAB, name: 'revocations', version, issuedAt, body, ...over }),
  });
  return {
    key,
    trust,
    verifier,
    answer,
    at: (t: number) => {
      now = t;
    },
  };
}

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (err) {
    return isTrustedMsError(err) ? err.code : 'NOT_A_TRUSTED_MS_ERROR';
  }
  return undefined;
}

describe('signed feeds: verify before use', () => {
  it('takes a fresh, well-signed feed and records its version and issue time', () => {
    const { verifier, answer } = setup();
    const { body, feed } = verifier.open('revocations', answer(5, 999_000, list(1)), parseRevocationList);
    expect(body.version).toBe('epoch.1');
    expect(feed).toEqual({ version: 5, issuedAt: 999_000 });
    expect(verifier.age('revocations')).toBe(1000);
  });

  it('refuses an unsigned answer (the plain list without an envelope): FEED_INVALID', () => {
    const { verifier } = setup();
    expect(codeOf(() => verifier.open('revocations', list(1), parseRevocationList))).toBe('FEED_INVALID');
    expect(verifier.held('revocations')).toBeUndefined();
  });

  it('refuses malformed envelopes: FEED_INVALID', () => {
    const { verifier, answer } = setup();
    const good = answer(1, 999_000, list(1))[FEED_FIELD];
    for (const bad of [
      { ...good, alg: 'RS256' },
      { ...good, payload: 'not base64url!' },
      { ...good, sig: 42 },
      { ...good, kid: undefined },
      'a string',
    ]) {
      expect(codeOf(() => verifier.open('revocations', { [FEED_FIELD]: bad }, parseRevocationList))).toBe(
        'FEED_INVALID',
      );
    }
  });

  it('refuses a feed signed with a key that is not in the bundle: FEED_KEY_UNKNOWN', () => {
    const { verifier } = setup();
    const other = keyPair();
    const forged = {
      [FEED_FIELD]: signFeed(other, {
        lab: LAB,
        name: 'revocations',
        version: 9,
        issuedAt: 999_000,
        body: list(1),
      }),
    };
    expect(codeOf(() => verifier.open('revocations', forged, parseRevocationList))).toBe('FEED_KEY_UNKNOWN');
  });

  it('refuses a bad signature, even under a known key id (a forger who copies the kid): FEED_SIGNATURE_INVALID', () => {
    const { verifier, key } = setup();
    const other = keyPair();
    const forged = signFeed(
      { kid: key.kid, privateKey: other.privateKey },
      {
        lab: LAB,
        name: 'revocations',
        version: 9,
        issuedAt: 999_000,
        body: list(1),
      },
    );
    expect(codeOf(() => verifier.open('revocations', { [FEED_FIELD]: forged }, parseRevocationList))).toBe(
      'FEED_SIGNATURE_INVALID',
    );
    // a payload changed after signing (a revoked user taken out of the list)
    const good = signFeed(key, {
      lab: LAB,
      name: 'revocations',
      version: 9,
      issuedAt: 999_000,
      body: list(1, { mallory: { notBefore: 1, revoked: true } }),
    });
    const payload = JSON.parse(Buffer.from(good.payload, 'base64url').toString('utf8'));
    payload.body.users = {};
    const tampered = { ...good, payload: Buffer.from(JSON.stringify(payload)).toString('base64url') };
    expect(codeOf(() => verifier.open('revocations', { [FEED_FIELD]: tampered }, parseRevocationList))).toBe(
      'FEED_SIGNATURE_INVALID',
    );
  });

  it('refuses an older version than the one held (a replay of a signed feed): FEED_REPLAYED; the same one again is fine', () => {
    const { verifier, answer } = setup();
    const old = answer(5, 990_000, list(1, { mallory: { notBefore: 1, revoked: false } }));
    const current = answer(6, 995_000, list(2, { mallory: { notBefore: 1, revoked: true } }));
    verifier.open('revocations', old, parseRevocationList);
    verifier.open('revocations', current, parseRevocationList);
    expect(codeOf(() => verifier.open('revocations', old, parseRevocationList))).toBe('FEED_REPLAYED');
    expect(verifier.held('revocations')).toEqual({ version: 6, issuedAt: 995_000 });
    expect(codeOf(() => verifier.open('revocations', current, parseRevocationList))).toBeUndefined();
  });

  it('refuses a feed issued longer ago than the maximum age: CONTROL_PLANE_STALE', () => {
    const { verifier, answer, at } = setup();
    at(1_000_000);
    expect(
      codeOf(() =>
        verifier.open('revocations', answer(1, 1_000_000 - MAX_AGE - 1, list(1)), parseRevocationList),
      ),
    ).toBe('CONTROL_PLANE_STALE');
    expect(verifier.held('revocations')).toBeUndefined();
    // exactly at the bound is still taken
    verifier.open('revocations', answer(2, 1_000_000 - MAX_AGE, list(1)), parseRevocationList);
  });

  it('refuses a feed with no lab time known yet (NaN clock): CONTROL_PLANE_STALE, never taken as fresh', () => {
    const key = keyPair();
    const verifier = new FeedVerifier({ keys: [key.trust], maxAgeMs: MAX_AGE }, LAB, () => Number.NaN);
    const a = {
      [FEED_FIELD]: signFeed(key, { lab: LAB, name: 'revocations', version: 1, issuedAt: 5, body: list(1) }),
    };
    expect(codeOf(() => verifier.open('revocations', a, parseRevocationList))).toBe('CONTROL_PLANE_STALE');
  });

  it("refuses another lab's feed and another feed's envelope: FEED_INVALID", () => {
    const { verifier, answer } = setup();
    expect(
      codeOf(() =>
        verifier.open('revocations', answer(1, 999_000, list(1), { lab: 'other' }), parseRevocationList),
      ),
    ).toBe('FEED_INVALID');
    // the services feed served where the revocation list is asked
    expect(
      codeOf(() =>
        verifier.open('revocations', answer(1, 999_000, list(1), { name: 'services' }), parseRevocationList),
      ),
    ).toBe('FEED_INVALID');
  });

  it('never half-applies: a verified envelope whose body does not parse changes nothing', () => {
    const { verifier, answer } = setup();
    verifier.open('revocations', answer(1, 999_000, list(1)), parseRevocationList);
    expect(
      codeOf(() => verifier.open('revocations', answer(7, 999_500, { version: 'bad' }), parseRevocationList)),
    ).toBe('INVALID_INPUT');
    expect(verifier.held('revocations')).toEqual({ version: 1, issuedAt: 999_000 });
  });

  it('takes a feed signed with the next key of a roll (two keys in the bundle)', () => {
    const current = keyPair();
    const next = keyPair();
    const verifier = new FeedVerifier(
      { keys: [current.trust, next.trust], maxAgeMs: MAX_AGE },
      LAB,
      () => 1_000_000,
    );
    for (const [i, k] of [current, next].entries()) {
      const a = {
        [FEED_FIELD]: signFeed(k, { lab: LAB, name: 'keys', version: i + 1, issuedAt: 999_000, body: {} }),
      };
      expect(verifier.open('keys', a, (b) => b).feed.version).toBe(i + 1);
    }
  });

  it('lab up --feed-max-age: whole seconds from 3 to 3600', () => {
    expect(labFeedMaxAge(undefined)).toBe(30);
    expect(labFeedMaxAge(6)).toBe(6);
    for (const bad of [0, 2, 3601, 1.5]) expect(codeOf(() => labFeedMaxAge(bad))).toBe('INVALID_INPUT');
  });
});

describe('the security service re-issues each feed at a sixth of the maximum age (heartbeat)', () => {
  it('serves the same issue while nothing changed and it is young, a new version after a sixth of the bound or a change', () => {
    const key = keyPair();
    let now = 1_000_000;
    const signer = new FeedSigner(key, LAB, () => now, MAX_AGE);
    const first = signer.envelope('revocations', list(1));
    now += 4_000;
    expect(signer.envelope('revocations', list(1))).toBe(first);
    now += 1_000; // 5 s: a sixth of 30 s
    const heartbeat = signer.envelope('revocations', list(1));
    expect(heartbeat).not.toBe(first);
    const changed = signer.envelope('revocations', list(2));
    const verifier = new FeedVerifier({ keys: [key.trust], maxAgeMs: MAX_AGE }, LAB, () => now);
    const versions = [first, heartbeat, changed].map(
      (e) => verifier.open('revocations', { [FEED_FIELD]: e }, parseRevocationList).feed.version,
    );
    expect(versions[1]).toBeGreaterThan(versions[0] as number);
    expect(versions[2]).toBeGreaterThan(versions[1] as number);
  });
});

describe('the feeds defence at a part', () => {
  it('signed: fails closed with CONTROL_PLANE_STALE once a tracked feed is older than the bound, and recovers with a fresh one', () => {
    const key = keyPair();
    let now = 1_000_000;
    const lines: string[] = [];
    const guard = new SignedFeeds(
      { keys: [key.trust], maxAgeMs: MAX_AGE },
      LAB,
      () => now,
      ['revocations'],
      (l) => lines.push(l),
    );
    const issue = (version: number) => ({
      [FEED_FIELD]: signFeed(key, {
        lab: LAB,
        name: 'revocations',
        version,
        issuedAt: now,
        body: list(version),
      }),
    });
    // nothing taken yet: nothing it could act on
    expect(codeOf(() => guard.assertFresh())).toBe('CONTROL_PLANE_STALE');
    guard.open('revocations', issue(1), parseRevocationList);
    expect(codeOf(() => guard.assertFresh())).toBeUndefined();
    now += MAX_AGE + 1;
    expect(codeOf(() => guard.assertFresh())).toBe('CONTROL_PLANE_STALE');
    expect(guard.status().stale).toBe(true);
    guard.open('revocations', issue(2), parseRevocationList);
    expect(codeOf(() => guard.assertFresh())).toBeUndefined();
    // a refusal is logged with its code
    expect(codeOf(() => guard.open('revocations', list(3), parseRevocationList))).toBe('FEED_INVALID');
    expect(lines.some((l) => l.includes('FEED_INVALID'))).toBe(true);
  });

  it('plain: takes the answer as it is and never refuses for age (the baseline)', () => {
    expect(PLAIN_FEEDS.open('revocations', list(1), parseRevocationList).version).toBe('epoch.1');
    expect(codeOf(() => PLAIN_FEEDS.assertFresh())).toBeUndefined();
  });
});
