import { createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import { jwkThumbprint } from '../crypto/thumbprint.js';
import { TrustedMsError } from '../errors.js';

/**
 * The control plane's feeds as signed data (issue 13, item 2; docs/control-plane.md, "Signed
 * feeds"): the ticket keys (`/v1/keys`), the attestation table (`/v1/services`) and the revocation
 * list (`/v1/revocations`), each wrapped by the security service in an envelope signed with its feed
 * key (Ed25519, not the ticket key). The parts hold the feed keys' public halves (the trust bundle,
 * written into their config by `lab up`, never fetched from the control plane) and verify every
 * feed before they use it; mutual TLS authenticates who answers, this authenticates what it says and
 * how old it is.
 *
 * Envelope: `{kid, alg: 'EdDSA', payload: base64url(JSON), sig: base64url}`; the signature covers
 * `FEED_DOMAIN` + the payload's base64url text, so no other signed thing of the lab can pass for a
 * feed. Payload: `{typ, lab, name, version, issuedAt, body}`: `version` grows with every issue
 * (replays of an older one are refused), `issuedAt` is the lab time of the issue (ms).
 */
export const FEED_TYPE = 'trusted-ms-feed/v1';
const FEED_DOMAIN = Buffer.from('trusted-ms feed v1\n', 'utf8');
export const FEED_NAMES = ['keys', 'services', 'revocations'] as const;
export type FeedName = (typeof FEED_NAMES)[number];
/** The answer field that carries the envelope. */
export const FEED_FIELD = 'feed';
export const DEFAULT_FEED_MAX_AGE_SECONDS = 30;
export const MIN_FEED_MAX_AGE_SECONDS = 3;
export const MAX_FEED_MAX_AGE_SECONDS = 3600;
/** `lab up --feed-max-age`, checked: whole seconds from MIN_ to MAX_FEED_MAX_AGE_SECONDS. */
export function labFeedMaxAge(seconds: number | undefined): number {
  const s = seconds ?? DEFAULT_FEED_MAX_AGE_SECONDS;
  if (!Number.isInteger(s) || s < MIN_FEED_MAX_AGE_SECONDS || s > MAX_FEED_MAX_AGE_SECONDS) {
    throw new TrustedMsError(
      'INVALID_INPUT',
      `a feed's maximum age is a whole number of seconds from ${MIN_FEED_MAX_AGE_SECONDS} to ${MAX_FEED_MAX_AGE_SECONDS}`,
      { actions: [`for example --feed-max-age ${DEFAULT_FEED_MAX_AGE_SECONDS}`] },
    );
  }
  return s;
}

/** An envelope larger than this is not parsed (the feeds are small: a 100k-entry list is ~5 MB). */
const MAX_PAYLOAD_CHARS = 8_000_000;

export interface FeedEnvelope {
  kid: string;
  alg: 'EdDSA';
  payload: string;
  sig: string;
}

export interface FeedPayload<T = unknown> {
  typ: typeof FEED_TYPE;
  lab: string;
  name: FeedName;
  version: number;
  issuedAt: number;
  body: T;
}

/** One key of the trust bundle, as a part's config holds it. */
export interface FeedTrustKey {
  kid: string;
  publicKeyPem: string;
}

/** What a part is told about the feeds it follows (`lab up`, its config's `feedTrust`). */
export interface FeedTrust {
  /** every key a feed may be signed with: the current one first, more during a roll */
  keys: FeedTrustKey[];
  /** a feed older than this (lab time since its issue) is not acted on */
  maxAgeMs: number;
}

/** The bundle entry for a feed key (its id is its JWK thumbprint, as the ticket keys'). */
export function feedTrustKey(key: KeyObject): FeedTrustKey {
  const publicKey = key.type === 'private' ? createPublicKey(key) : key;
  return {
    kid: jwkThumbprint(publicKey),
    publicKeyPem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
  };
}

/** Signs one issue of a feed (the security service; `FeedSigner` decides when). */
export function signFeed(
  key: { kid: string; privateKey: KeyObject },
  payload: Omit<FeedPayload, 'typ'>,
): FeedEnvelope {
  const text = Buffer.from(JSON.stringify({ typ: FEED_TYPE, ...payload }), 'utf8').toString('base64url');
  const sig = sign(null, Buffer.concat([FEED_DOMAIN, Buffer.from(text, 'ascii')]), key.privateKey);
  return { kid: key.kid, alg: 'EdDSA', payload: text, sig: sig.toString('base64url') };
}

const B64URL_RE = /^[A-Za-z0-9_-]+$/;

/** The feed's held state at a part: the last version taken and when it was issued. */
export interface HeldFeed {
  version: number;
  issuedAt: number;
}

/**
 * A part's verifier of the feeds: the trust bundle's keys parsed once (KeyObjects), the last
 * version taken of each feed, and the staleness bound. `open` runs once per feed answer (every
 * few seconds), never per request; `stale` is what the request path asks (a subtraction).
 */
export class FeedVerifier {
  readonly #keys = new Map<string, KeyObject>();
  readonly #held = new Map<FeedName, HeldFeed>();
  readonly maxAgeMs: number;

  constructor(
    trust: FeedTrust,
    readonly labId: string,
    /** the part's lab clock (ms); NaN until it knows the lab time */
    readonly now: () => number,
  ) {
    for (const k of trust.keys) this.#keys.set(k.kid, createPublicKey(k.publicKeyPem));
    if (this.#keys.size === 0) throw new TrustedMsError('INVALID_INPUT', 'the feed trust bundle has no key');
    if (!Number.isSafeInteger(trust.maxAgeMs) || trust.maxAgeMs <= 0) {
      throw new TrustedMsError('INVALID_INPUT', 'the feed trust bundle has no valid maximum age');
    }
    this.maxAgeMs = trust.maxAgeMs;
  }

  /**
   * Verifies the envelope in `answer` (its `feed` field) as an issue of feed `name`, hands its body
   * to `parse`, and only when every check and the parse passed records it as held: a refused feed
   * changes nothing. Throws FEED_INVALID (no envelope, malformed, another lab's or another feed's),
   * FEED_KEY_UNKNOWN, FEED_SIGNATURE_INVALID, FEED_REPLAYED (older than the one held) or
   * CONTROL_PLANE_STALE (issued longer ago than the maximum age).
   */
  open<T>(name: FeedName, answer: unknown, parse: (body: unknown) => T): { body: T; feed: HeldFeed } {
    const payload = this.#verified(answer);
    const bad = (why: string) => new TrustedMsError('FEED_INVALID', `the ${name} feed is invalid: ${why}`);
    if (payload.typ !== FEED_TYPE) throw bad('not a feed of this protocol');
    if (payload.lab !== this.labId) throw bad('signed for another lab');
    if (payload.name !== name) throw bad(`it is the ${String(payload.name).slice(0, 32)} feed`);
    const { version, issuedAt } = payload;
    if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 0) throw bad('version');
    if (typeof issuedAt !== 'number' || !Number.isSafeInteger(issuedAt) || issuedAt <= 0) {
      throw bad('issue time');
    }
    const held = this.#held.get(name);
    if (held !== undefined && version < held.version) {
      throw new TrustedMsError(
        'FEED_REPLAYED',
        `the ${name} feed is version ${version}, older than the version ${held.version} held: a replay, not taken`,
      );
    }
    const age = this.now() - issuedAt;
    if (!(age <= this.maxAgeMs)) {
      throw new TrustedMsError(
        'CONTROL_PLANE_STALE',
        `the ${name} feed was issued ${Number.isFinite(age) ? `${Math.round(age / 1000)} s` : 'an unknown time'} ago, over the maximum of ${this.maxAgeMs / 1000} s: not taken`,
      );
    }
    const body = parse(payload.body);
    const feed = { version, issuedAt };
    this.#held.set(name, feed);
    return { body, feed };
  }

  #verified(answer: unknown): Partial<FeedPayload> {
    const envelope =
      typeof answer === 'object' && answer !== null
        ? (answer as Record<string, unknown>)[FEED_FIELD]
        : undefined;
    if (typeof envelope !== 'object' || envelope === null) {
      throw new TrustedMsError('FEED_INVALID', 'the answer carries no signed feed (unsigned): not taken');
    }
    const { kid, alg, payload, sig } = envelope as Record<string, unknown>;
    if (
      typeof kid !== 'string' ||
      alg !== 'EdDSA' ||
      typeof payload !== 'string' ||
      payload.length > MAX_PAYLOAD_CHARS ||
      !B64URL_RE.test(payload) ||
      typeof sig !== 'string' ||
      sig.length > 200 ||
      !B64URL_RE.test(sig)
    ) {
      throw new TrustedMsError('FEED_INVALID', 'the signed feed is malformed: not taken');
    }
    const key = this.#keys.get(kid);
    if (key === undefined) {
      throw new TrustedMsError(
        'FEED_KEY_UNKNOWN',
        `the feed is signed with key ${kid.slice(0, 64)}, which is not in this part's trust bundle: not taken`,
      );
    }
    const ok = verify(
      null,
      Buffer.concat([FEED_DOMAIN, Buffer.from(payload, 'ascii')]),
      key,
      Buffer.from(sig, 'base64url'),
    );
    if (!ok)
      throw new TrustedMsError('FEED_SIGNATURE_INVALID', 'the feed signature does not verify: not taken');
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    } catch {
      throw new TrustedMsError('FEED_INVALID', 'the signed feed payload is not JSON: not taken');
    }
    if (typeof parsed !== 'object' || parsed === null) {
      throw new TrustedMsError('FEED_INVALID', 'the signed feed payload is not an object: not taken');
    }
    return parsed as Partial<FeedPayload>;
  }

  /** The feed last taken, if any. */
  held(name: FeedName): HeldFeed | undefined {
    return this.#held.get(name);
  }

  /** The age (ms, lab clock) of the feed held, Infinity when none was taken. */
  age(name: FeedName): number {
    const held = this.#held.get(name);
    return held === undefined ? Number.POSITIVE_INFINITY : this.now() - held.issuedAt;
  }
}
