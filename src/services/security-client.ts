import { createPublicKey, type KeyObject } from 'node:crypto';
import type { Dispatcher } from 'undici';
import type { FeedGuard } from '../defences/feeds.js';
import { isTrustedMsError, TrustedMsError } from '../errors.js';
import { jsonRequest } from '../kernel/http-client.js';
import { ReplicaSet } from '../kernel/replica-set.js';
import { isTlsFailure } from '../kernel/tls-failure.js';
import { IAT_LEEWAY_SECONDS, type LabClock, labTimeOf } from '../protocol/lab-clock.js';
import { type TicketKind, TicketVerifier } from '../protocol/ticket.js';

/**
 * How the gateway and the services talk to the security service: JSON calls with the lab token,
 * retried while it starts, and the ticket keys turned into a TicketVerifier once. With replicas
 * (issue 17) a call goes to the one that last answered, and to the next when it never reached it
 * (refused, not connected in time): only then, since a request that was sent may have been acted on.
 */
export class SecurityClient {
  private readonly replicas: ReplicaSet;

  constructor(
    baseUrls: string | readonly string[],
    private readonly labToken?: string,
    private readonly dispatcher?: Dispatcher,
  ) {
    this.replicas = new ReplicaSet(typeof baseUrls === 'string' ? [baseUrls] : baseUrls);
  }

  private get baseUrl(): string {
    return this.replicas.sticky()[0] as string;
  }

  call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    return this.replicas.callSticky((url) =>
      jsonRequest<T>(`${url}${path}`, {
        method,
        timeoutMs: 5000,
        ...(this.labToken === undefined ? {} : { token: this.labToken }),
        ...(this.dispatcher === undefined ? {} : { dispatcher: this.dispatcher }),
        ...(body === undefined ? {} : { body }),
      }),
    );
  }

  /** Retries while the security service is unreachable or answers 5xx, up to the deadline. */
  async untilReady<T>(what: string, run: () => Promise<T>, deadlineMs = 10_000): Promise<T> {
    const deadline = performance.now() + deadlineMs;
    for (;;) {
      try {
        return await run();
      } catch (err) {
        // Not the security service (links:mtls): fail closed at once rather than retry into it.
        if (isTlsFailure(err)) throw controlPlaneUntrusted(this.baseUrl, what, err);
        const transient = !isTrustedMsError(err) || err.httpStatus >= 500;
        if (!transient || performance.now() > deadline) {
          throw new TrustedMsError(
            isTrustedMsError(err) ? err.code : 'SERVICE_UNAVAILABLE',
            `${what} failed: ${(err as Error).message}`,
          );
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }

  /**
   * The security service's ticket keys as a verifier that caches every good ticket until expiry.
   * With `clock` (the part's lab clock), tickets are judged on it, and it starts from (or moves
   * forward to) the lab time in the answer, taken as read half-way through the round trip.
   */
  async ticketVerifier(posture: TicketKind, clock?: LabClock, feeds?: FeedGuard): Promise<TicketVerifier> {
    let sentAt = 0;
    let receivedAt = 0;
    const answer = await this.untilReady('fetching the ticket keys', async () => {
      sentAt = performance.now();
      const a = await this.call<unknown>('GET', '/v1/keys');
      receivedAt = performance.now();
      return a;
    });
    const labTime = labTimeOf(answer);
    if (clock !== undefined) {
      if (labTime === undefined) {
        throw new TrustedMsError(
          'SERVICE_UNAVAILABLE',
          'the security service did not give the lab time with its keys',
        );
      }
      clock.adopt(labTime, (sentAt + receivedAt) / 2);
    }
    // feeds:signed: the keys from the verified envelope only (a fresh issue, for this lab).
    const r = feeds ? feeds.open('keys', answer, parseKeySet) : parseKeySet(answer);
    const keys = new Map<string, KeyObject>();
    for (const k of r.keys) if (k.alg === 'EdDSA') keys.set(k.kid, createPublicKey(k.publicKeyPem));
    if (keys.size === 0) throw new TrustedMsError('KEY_NOT_FOUND', 'the security service has no EdDSA key');
    if (clock === undefined)
      return new TicketVerifier({ keys, issuer: r.issuer, audience: r.audience, posture });
    return new TicketVerifier({
      keys,
      issuer: r.issuer,
      audience: r.audience,
      posture,
      now: () => clock.now(),
      issuedAtLeewaySeconds: IAT_LEEWAY_SECONDS,
    });
  }
}

interface KeySet {
  issuer: string;
  audience: string;
  keys: { kid: string; alg: string; publicKeyPem: string }[];
}

/** The ticket keys as `/v1/keys` gives them; INVALID_INPUT when the answer is not that. */
function parseKeySet(x: unknown): KeySet {
  const {
    issuer,
    audience,
    keys = [],
  } = (typeof x === 'object' && x !== null ? x : {}) as Record<string, unknown>;
  if (
    typeof issuer !== 'string' ||
    typeof audience !== 'string' ||
    !Array.isArray(keys) ||
    keys.length > 100 ||
    !keys.every(
      (k) =>
        typeof k === 'object' &&
        k !== null &&
        typeof (k as Record<string, unknown>).kid === 'string' &&
        typeof (k as Record<string, unknown>).alg === 'string' &&
        typeof (k as Record<string, unknown>).publicKeyPem === 'string',
    )
  ) {
    throw new TrustedMsError('INVALID_INPUT', 'the ticket keys are not a key set');
  }
  return { issuer, audience, keys: keys as KeySet['keys'] };
}

/** The refusal a part gives when the security service's address does not prove its identity. */
export function controlPlaneUntrusted(url: string, what: string, cause: unknown): TrustedMsError {
  return new TrustedMsError(
    'CONTROL_PLANE_UNTRUSTED',
    `${what}: ${new URL(url).host} did not prove to be the security service (TLS handshake failed); nothing was sent to it or taken from it`,
    { cause },
  );
}
