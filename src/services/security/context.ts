import { type KeyObject, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { type SecurityLimits, securityLimits } from '../../defences/limits.js';
import { partCredentialStrategy } from '../../defences/part-credentials.js';
import type { Defences } from '../../defences/presets.js';
import { monotonicNow } from '../../defences/rate-limit.js';
import type { LockoutPersistence } from '../../defences/smart-lockout.js';
import { TrustedMsError } from '../../errors.js';
import { CLIENT_ADDRESS_HEADER, clientAddressOf } from '../../kernel/client-address.js';
import type { LabCa } from '../../pki/ca.js';
import { forwardOnlyClock } from '../../protocol/clock.js';
import { labAudience, labIssuer } from '../../protocol/issuer.js';
import { loginThrottleFile } from '../../store/login-throttle-file.js';
import type { LabStore } from '../../store/store.js';
import { controlPeerOf } from './control-peer.js';
import type { FeedSigner } from './feed-signer.js';
import type { PartCredentials } from './part-credentials.js';
import type { ServiceRegistry, ServiceStatus } from './registry.js';
import { RevocationBook } from './revocations.js';
import { type PublishedTicketKey, ticketKeySet } from './ticket-key-set.js';

export interface SecurityDeps {
  labId: string;
  /** login: which login it answers; limits: its per-address login limit and lock-out */
  defences: Defences;
  store: LabStore;
  registry: ServiceRegistry;
  signingKey: { kid: string; privateKey: KeyObject };
  /** the other replicas' ticket keys (public halves), published with this one's (issue 17) */
  peerTicketKeys?: KeyObject[];
  sealKey: Buffer;
  labToken: string;
  /**
   * credentials:secret (src/defences/part-credentials.ts): each part's own credential; without it
   * no part is known by a secret (only the lab token self-reports).
   */
  partCredentials?: PartCredentials;
  ca?: LabCa;
  /** the gateway's address on the lab's network: with edge:tls its renewed certificate names that host too */
  gatewayUrl?: string;
  /** how long the identities it issues last (lab up gives it; default DEFAULT_CERT_TTL_SECONDS) */
  identityTtlSeconds?: number;
  ticketTtlSeconds: number;
  challengeTtlSeconds: number;
  /** told about every attestation change, so the gateway refuses a tampered service at once */
  onAttestation?: (services: ServiceStatus[]) => Promise<void>;
  /** where the smart lock-out keeps its state between restarts (default: the store's login-throttle file) */
  lockoutPersistence?: LockoutPersistence;
  /** revoked users and quarantined services, loaded from the store (default: an empty book) */
  revocations?: RevocationBook;
  /** feeds:signed: signs the keys, the attestation table and the revocation list it serves */
  feeds?: FeedSigner;
  /**
   * The lab clock (ticket iat, challenge expiry, the lab time /v1/keys and the revocation feed hand
   * out; also the rate limits' when given, for tests), the store's by default (main.ts gives the store
   * `homeLabClock`), so that tickets' iat and revocations' notBefore come from one clock. Read
   * through `forwardOnlyClock`: whatever clock a test gives, a step back does not make an expired
   * challenge good again.
   */
  now?: () => number;
}

/**
 * What the security service's route plugins share, made once per app from its SecurityDeps: the
 * defaults filled in, and the checks and the audit policy every route applies the same way.
 */
export interface SecurityContext extends Omit<SecurityDeps, 'revocations' | 'now' | 'lockoutPersistence'> {
  revocations: RevocationBook;
  now: () => number;
  /** the login's per-address limit, smart lock-out and uniform password checks (none with limits:off) */
  loginLimits: SecurityLimits;
  issuer: string;
  audience: string;
  /** what /v1/keys publishes: the signing key's public half, then the other replicas' */
  ticketKeys: PublishedTicketKey[];
  audit: (entry: Parameters<LabStore['audit']>[0]) => Promise<void>;
  requireLabToken: (request: FastifyRequest) => void;
  /**
   * May this request report `service`'s own hash? The lab token (the CLI) may report any; a part's
   * own credential its own name only (ACCESS_DENIED for another's); nothing else (ADMIN_TOKEN_INVALID).
   */
  requireSelfReporter: (request: FastifyRequest, service: string) => void;
  /** The part a revocation poll confirms for: the one its credential names, when it claims that one. */
  confirmingPart: (request: FastifyRequest, claimed: string | undefined) => string | undefined;
  /** The real client of a login relayed by the gateway (see client-address.ts), else the socket's. */
  clientOf: (request: FastifyRequest) => string;
  /** After the password or the signature: only someone who proved to be the user learns it is revoked. */
  refuseRevoked: (request: FastifyRequest, action: string, user: string) => Promise<void>;
}

export function securityContext(deps: SecurityDeps): SecurityContext {
  const { store } = deps;
  const revocations = deps.revocations ?? new RevocationBook(store);

  // A refusal stands whether or not its record can be written; a grant (a challenge, a ticket, an
  // attestation) is not given without its record: it fails with the audit log's error and cause.
  const audit = (entry: Parameters<LabStore['audit']>[0]): Promise<void> =>
    entry.outcome === 'denied' || entry.outcome === 'error'
      ? store.audit(entry).catch(() => undefined)
      : store.auditRequired(entry);

  const hasLabToken = (request: FastifyRequest): boolean => {
    const given = Buffer.from(/^Bearer (.+)$/.exec(request.headers.authorization ?? '')?.[1] ?? '');
    const want = Buffer.from(deps.labToken);
    return given.length === want.length && timingSafeEqual(given, want);
  };
  const requireLabToken = (request: FastifyRequest): void => {
    if (!hasLabToken(request)) throw new TrustedMsError('ADMIN_TOKEN_INVALID', 'missing or wrong lab token');
  };
  const callerPart = (request: FastifyRequest): string | undefined =>
    deps.partCredentials?.partOf(request.headers.authorization);
  const requireSelfReporter = (request: FastifyRequest, service: string): void => {
    if (hasLabToken(request)) return;
    const part = callerPart(request);
    if (part === undefined) throw new TrustedMsError('ADMIN_TOKEN_INVALID', 'missing or wrong credential');
    if (part !== service) {
      throw new TrustedMsError('ACCESS_DENIED', `${part} may report only its own measurement`);
    }
  };
  const strategy = partCredentialStrategy(deps.defences);
  const confirmingPart = (request: FastifyRequest, claimed: string | undefined): string | undefined => {
    if (claimed === undefined) return undefined;
    switch (strategy) {
      case 'declared':
        return claimed;
      case 'secret':
        return callerPart(request) === claimed ? claimed : undefined;
      case 'certificate': {
        // The kind too: a service-kind certificate named `gateway` is not the gateway.
        const peer = controlPeerOf(request, deps.labId);
        const kind = claimed === 'gateway' ? 'gateway' : 'service';
        return peer?.kind === kind && peer.name === claimed ? claimed : undefined;
      }
    }
  };
  // The gateway vouches for the address of a login it relays: with the lab token, or (links:mtls)
  // by its certificate on the control-plane listener.
  const relayedByGateway = (request: FastifyRequest): boolean =>
    hasLabToken(request) || controlPeerOf(request, deps.labId)?.kind === 'gateway';
  const clientOf = (request: FastifyRequest): string =>
    clientAddressOf(request.ip, request.headers[CLIENT_ADDRESS_HEADER], relayedByGateway(request));

  const refuseRevoked = async (request: FastifyRequest, action: string, user: string): Promise<void> => {
    if (!revocations.userRevoked(user)) return;
    await audit({ actor: clientOf(request), action, target: user, outcome: 'denied', code: 'USER_REVOKED' });
    throw new TrustedMsError('USER_REVOKED', `${user} is revoked`, {
      actions: [`an administrator can let ${user} in again: trusted-ms user reinstate ${user}`],
    });
  };

  const { revocations: _given, now: _now, lockoutPersistence, peerTicketKeys: _peers, ...rest } = deps;
  const wall = deps.now ?? (() => deps.store.now().getTime());
  return {
    ...rest,
    revocations,
    now: forwardOnlyClock(deps.now ?? (() => deps.store.now().getTime())),
    // Durations on a monotonic clock unless a test injects one (see monotonicNow).
    // The lock-out's state is saved on the wall clock so that a restart reads it back.
    loginLimits: securityLimits(deps.defences.limits, {
      now: deps.now ?? monotonicNow,
      wall,
      persistence: lockoutPersistence ?? loginThrottleFile(deps.store.home),
      // Replicas on a shared store count every try in it, on the store's clock unless a test gives one.
      ...(deps.store.replicas?.lockout !== undefined && lockoutPersistence === undefined
        ? { sharedMeters: { table: deps.store.replicas.lockout, ...(deps.now ? { now: deps.now } : {}) } }
        : {}),
    }),
    issuer: labIssuer(deps.labId),
    audience: labAudience(deps.labId),
    ticketKeys: ticketKeySet(deps.signingKey.privateKey, deps.peerTicketKeys),
    audit,
    requireLabToken,
    requireSelfReporter,
    confirmingPart,
    clientOf,
    refuseRevoked,
  };
}
