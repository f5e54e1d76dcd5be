import { createPublicKey, type KeyObject, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { describeKey } from '../../crypto/keys.js';
import { paperVerify } from '../../crypto/paper-scheme.js';
import { isAttested } from '../../defences/attestation-table.js';
import { securityLimits } from '../../defences/limits.js';
import { type Defences, ticketKindOf } from '../../defences/presets.js';
import { monotonicNow } from '../../defences/rate-limit.js';
import { isTrustedMsError, TrustedMsError } from '../../errors.js';
import { CLIENT_ADDRESS_HEADER, clientAddressOf } from '../../kernel/client-address.js';
import type { LabCa } from '../../pki/ca.js';
import { issueServiceCertificate, type ServiceIdentity } from '../../pki/identity.js';
import { permissionsOf } from '../../policy/evaluate.js';
import {
  type Challenge,
  newChallenge,
  signatureFromWire,
  verifyChallengeSignature,
} from '../../protocol/challenge.js';
import { forwardOnlyClock } from '../../protocol/clock.js';
import { labAudience, labIssuer } from '../../protocol/issuer.js';
import { deriveSessionKey, newExchangeKeyPair, sealSessionKey } from '../../protocol/session-key.js';
import { issueTicket, type TicketClaims } from '../../protocol/ticket.js';
import { CHALLENGE_REQUEST_BODY, VERIFY_REQUEST_BODY } from '../../protocol/wire-schemas.js';
import type { UserKey, UserRecord } from '../../store/schema.js';
import type { LabStore } from '../../store/store.js';
import {
  addUser,
  addUserKey,
  checkPassword,
  getUser,
  importHtpasswd,
  removeUser,
  removeUserKey,
  replaceUserKeys,
  toPublicUser,
} from '../../users/users.js';
import { createHttpApp } from '../http.js';
import { describeApi } from '../openapi.js';
import type { ServiceRegistry, ServiceStatus } from './registry.js';
import { RevocationBook, registerRevocationRoutes } from './revocations.js';

export interface SecurityDeps {
  labId: string;
  /** login: which login it answers; limits: its per-address login limit and lock-out */
  defences: Defences;
  store: LabStore;
  registry: ServiceRegistry;
  signingKey: { kid: string; privateKey: KeyObject };
  sealKey: Buffer;
  labToken: string;
  ca?: LabCa;
  ticketTtlSeconds: number;
  challengeTtlSeconds: number;
  /** told about every attestation change, so the gateway refuses a tampered service at once */
  onAttestation?: (services: ServiceStatus[]) => Promise<void>;
  /** revoked users and quarantined services, loaded from the store (default: an empty book) */
  revocations?: RevocationBook;
  /**
   * The wall clock (ticket iat, challenge expiry; also the rate limits' when given, for tests), the
   * store's by default, so that tickets' iat and revocations' notBefore come from one clock. Read
   * through `forwardOnlyClock`: a step back does not make an expired challenge good again.
   */
  now?: () => number;
}

export { labAudience, labIssuer } from '../../protocol/issuer.js';

type Pending =
  | { kind: 'signed-challenge'; challenge: Challenge }
  | { kind: 'encrypted-ticket'; id: string; user: string; ticket: Buffer; expiresAt: number };

const NAME = { type: 'string', minLength: 1, maxLength: 64 } as const;
const B64URL = { type: 'string', minLength: 1, maxLength: 4096, pattern: '^[A-Za-z0-9_-]+$' } as const;

/**
 * The security service: owns users, keys, the service registry and the audit log while the lab
 * runs, authenticates users (password, then a signed challenge or the paper's encrypted ticket)
 * and issues the session tickets every other part verifies offline.
 */
export function buildSecurityService(deps: SecurityDeps): FastifyInstance {
  const now = forwardOnlyClock(deps.now ?? (() => deps.store.now().getTime()));
  const app = createHttpApp();
  describeApi(app, {
    title: 'trusted-ms security service',
    description:
      'Users, keys, logins (docs/protocol.md), the service registry, revocations, and the admin API the CLI uses while a lab runs (lab token).',
  });
  const pending = new Map<string, Pending>();
  const { login } = deps.defences;
  // Durations on a monotonic clock unless a test injects one (see monotonicNow).
  const { perClient, lockout } = securityLimits(deps.defences.limits, deps.now ?? monotonicNow);
  // The ticket a login here issues: the paper's bearer ticket, or one bound to a session key.
  const ticketKind = ticketKindOf(login) ?? 'paper';
  const issuer = labIssuer(deps.labId);
  const audience = labAudience(deps.labId);
  const publicKeyPem = createPublicKey(deps.signingKey.privateKey)
    .export({ format: 'pem', type: 'spki' })
    .toString();
  const { store } = deps;
  const revocations = deps.revocations ?? new RevocationBook(store);

  // Parsed once per registered key: parsing PEM on every login is 5-7x slower (DESIGN.md).
  const parsedKeys = new Map<string, KeyObject>();
  const publicKeyOf = (k: UserKey): KeyObject => {
    let key = parsedKeys.get(k.publicKeyPem);
    if (key === undefined) {
      key = createPublicKey(k.publicKeyPem);
      // A key registered before keys were checked where they are stored may be unsound (a small-
      // order Ed25519 point, RSA with e = 1): nothing signed with it counts.
      try {
        describeKey(key);
      } catch {
        throw new TrustedMsError('SIGNATURE_INVALID', 'signature verification failed');
      }
      if (parsedKeys.size >= 10_000) parsedKeys.clear();
      parsedKeys.set(k.publicKeyPem, key);
    }
    return key;
  };

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
  /** The real client of a login relayed by the gateway (see client-address.ts), else the socket's. */
  const clientOf = (request: FastifyRequest): string =>
    clientAddressOf(request.ip, request.headers[CLIENT_ADDRESS_HEADER], hasLabToken(request));

  /** After the password or the signature: only someone who proved to be the user learns it is revoked. */
  const refuseRevoked = async (request: FastifyRequest, action: string, user: string): Promise<void> => {
    if (!revocations.userRevoked(user)) return;
    await audit({ actor: clientOf(request), action, target: user, outcome: 'denied', code: 'USER_REVOKED' });
    throw new TrustedMsError('USER_REVOKED', `${user} is revoked`, {
      actions: [`an administrator can let ${user} in again: trusted-ms user reinstate ${user}`],
    });
  };

  const sweep = (): void => {
    const t = now();
    for (const [id, p] of pending) {
      const exp = p.kind === 'signed-challenge' ? p.challenge.expiresAt : p.expiresAt;
      if (exp * 1000 <= t) pending.delete(id);
    }
  };

  const passwordStep = async (
    request: FastifyRequest,
    user: string,
    password: string,
  ): Promise<UserRecord> => {
    const client = clientOf(request);
    if (perClient !== undefined && !perClient.take(client)) {
      await audit({
        actor: client,
        action: 'auth.challenge',
        target: user,
        outcome: 'denied',
        code: 'RATE_LIMITED',
      });
      throw new TrustedMsError('RATE_LIMITED', 'too many login attempts from this address');
    }
    if (lockout?.isLocked(user) === true) {
      await audit({
        actor: client,
        action: 'auth.challenge',
        target: user,
        outcome: 'denied',
        code: 'ACCOUNT_LOCKED',
      });
      throw new TrustedMsError('ACCOUNT_LOCKED', 'too many failed logins: try again later');
    }
    try {
      const { user: record } = await checkPassword(store, user, password, { actor: client });
      lockout?.succeed(user);
      await refuseRevoked(request, 'auth.challenge', user);
      return record;
    } catch (err) {
      // Only a wrong password counts towards the lock-out: a login refused because it could not be
      // audited (a full disk) must not lock the user out for ten minutes after space is back.
      if (isTrustedMsError(err, 'AUTH_FAILED')) lockout?.fail(user);
      throw err;
    }
  };

  const ticketFor = (
    user: UserRecord,
    roles: Awaited<ReturnType<LabStore['data']>>['roles'],
    extra: Partial<TicketClaims>,
  ) => {
    const role = Object.hasOwn(roles, user.role) ? roles[user.role] : undefined;
    const iat = Math.floor(now() / 1000);
    const claims: TicketClaims = {
      v: 1,
      iss: issuer,
      aud: audience,
      sub: user.name,
      role: user.role,
      perms: role ? permissionsOf(role) : {},
      iat,
      exp: iat + deps.ticketTtlSeconds,
      jti: randomBytes(16).toString('base64url'),
      posture: ticketKind,
      ...extra,
    };
    return claims;
  };

  app.get('/healthz', async () => ({
    ok: true,
    part: 'security',
    defences: deps.defences,
    labId: deps.labId,
  }));

  app.get('/v1/keys', async () => ({
    issuer,
    audience,
    keys: [{ kid: deps.signingKey.kid, alg: 'EdDSA', publicKeyPem }],
  }));

  app.get('/v1/services', async () => ({
    defences: deps.defences,
    services: deps.registry
      .list()
      .map((s) => (revocations.quarantined(s.name) ? { ...s, quarantined: true } : s)),
  }));
  registerRevocationRoutes(app, { store, book: revocations, requireLabToken });

  app.post<{ Body: { user: string; password: string; clientKey?: string } }>(
    '/v1/auth/challenge',
    { schema: { body: CHALLENGE_REQUEST_BODY } },
    async (request) => {
      if (login === 'basic') {
        throw new TrustedMsError(
          'POSTURE_MISMATCH',
          "this lab's login is HTTP basic (posture none has no login): the gateway checks passwords",
        );
      }
      sweep();
      const { user, password, clientKey } = request.body;
      if (login === 'challenge' && clientKey === undefined) {
        throw new TrustedMsError('INVALID_INPUT', 'clientKey (an X25519 public key) is required');
      }
      const record = await passwordStep(request, user, password);
      if (login !== 'challenge') {
        if (!record.keys.some((k) => k.type === 'rsa')) {
          throw new TrustedMsError('KEY_NOT_FOUND', `${user} has no RSA key: the paper's scheme needs one`, {
            actions: [`trusted-ms user keygen ${user} --type rsa`],
          });
        }
        const id = randomBytes(16).toString('base64url');
        const expiresAt = Math.floor(now() / 1000) + deps.challengeTtlSeconds;
        const ticket = randomBytes(32);
        await audit({ actor: clientOf(request), action: 'auth.challenge', target: user, outcome: 'ok' });
        pending.set(id, { kind: 'encrypted-ticket', id, user, ticket, expiresAt });
        return { posture: 'paper', id, user, ticket: ticket.toString('base64url'), expiresAt };
      }
      if (record.keys.length === 0) {
        throw new TrustedMsError('KEY_NOT_FOUND', `${user} has no registered key`, {
          actions: [`trusted-ms user keygen ${user}`],
        });
      }
      const challenge = newChallenge(user, issuer, clientKey as string, deps.challengeTtlSeconds, now);
      await audit({ actor: clientOf(request), action: 'auth.challenge', target: user, outcome: 'ok' });
      pending.set(challenge.id, { kind: 'signed-challenge', challenge });
      return { posture: 'trusted', ...challenge };
    },
  );

  app.post<{ Body: { id: string; signature: string } }>(
    '/v1/auth/verify',
    { schema: { body: VERIFY_REQUEST_BODY } },
    async (request) => {
      const { id, signature } = request.body;
      const p = pending.get(id);
      // One use only, whatever the outcome: a captured answer can never be replayed.
      pending.delete(id);
      if (p === undefined) {
        await audit({
          actor: clientOf(request),
          action: 'auth.verify',
          outcome: 'denied',
          code: 'CHALLENGE_UNKNOWN',
        });
        throw new TrustedMsError('CHALLENGE_UNKNOWN', 'unknown or already used challenge');
      }
      const user = p.kind === 'signed-challenge' ? p.challenge.user : p.user;
      const deny = async (err: TrustedMsError): Promise<never> => {
        await audit({
          actor: clientOf(request),
          action: 'auth.verify',
          target: user,
          outcome: 'denied',
          code: err.code,
        });
        throw err;
      };
      const data = await store.data();
      const record = Object.hasOwn(data.users, user) ? data.users[user] : undefined;
      if (!record) return deny(new TrustedMsError('AUTH_FAILED', 'authentication failed'));
      // A challenge asked for before a revocation and answered after it gets no ticket.
      await refuseRevoked(request, 'auth.verify', user);
      const sig = signatureFromWire(signature);

      if (p.kind === 'encrypted-ticket') {
        if (p.expiresAt * 1000 <= now())
          return deny(new TrustedMsError('CHALLENGE_EXPIRED', 'challenge expired'));
        const key = record.keys.find((k) => k.type === 'rsa' && paperVerify(publicKeyOf(k), sig, p.ticket));
        if (!key) return deny(new TrustedMsError('SIGNATURE_INVALID', 'signature verification failed'));
        const claims = ticketFor(record, data.roles, {});
        await audit({
          actor: clientOf(request),
          action: 'auth.verify',
          target: user,
          outcome: 'allowed',
          detail: { jti: claims.jti },
        });
        return {
          ticket: issueTicket(deps.signingKey, claims),
          expiresAt: claims.exp,
          thumbprint: key.thumbprint,
        };
      }

      let matched: UserKey | undefined;
      let lastError: unknown;
      for (const k of record.keys) {
        try {
          verifyChallengeSignature(publicKeyOf(k), p.challenge, sig, {
            now,
            expectedAudience: issuer,
            expectedUser: user,
          });
          matched = k;
          break;
        } catch (err) {
          lastError = err;
        }
      }
      if (!matched) {
        return deny(
          lastError instanceof TrustedMsError && lastError.code === 'CHALLENGE_EXPIRED'
            ? lastError
            : new TrustedMsError('SIGNATURE_INVALID', 'signature verification failed'),
        );
      }
      const exchange = newExchangeKeyPair();
      const sessionKey = deriveSessionKey(exchange.privateKey, p.challenge.clientKey, p.challenge.id);
      const jti = randomBytes(16).toString('base64url');
      const claims = ticketFor(record, data.roles, {
        jti,
        cnf: { jkt: matched.thumbprint, sk: sealSessionKey(deps.sealKey, sessionKey, jti) },
      });
      await audit({
        actor: clientOf(request),
        action: 'auth.verify',
        target: user,
        outcome: 'allowed',
        detail: { jti },
      });
      return {
        ticket: issueTicket(deps.signingKey, claims),
        expiresAt: claims.exp,
        serverKey: exchange.publicKeyRaw,
        thumbprint: matched.thumbprint,
      };
    },
  );

  // Posture none: the gateway's password check (HTTP basic), the only authentication there is.
  app.post<{ Body: { user: string; password: string } }>(
    '/v1/internal/password',
    {
      schema: {
        body: {
          type: 'object',
          required: ['user', 'password'],
          additionalProperties: false,
          properties: { user: NAME, password: { type: 'string', minLength: 1, maxLength: 1024 } },
        },
      },
    },
    async (request) => {
      requireLabToken(request);
      const { user: record } = await checkPassword(store, request.body.user, request.body.password, {
        actor: 'gateway',
      });
      await refuseRevoked(request, 'auth.password', record.name);
      const roles = (await store.data()).roles;
      const role = Object.hasOwn(roles, record.role) ? roles[record.role] : undefined;
      return { user: record.name, role: record.role, perms: role ? permissionsOf(role) : {} };
    },
  );

  const reportAndIssue = async (
    reports: Parameters<ServiceRegistry['report']>[0],
    issueIdentity: boolean,
  ) => {
    const statuses = await deps.registry.report(reports);
    // All at once: the audit log queues the appends itself (one line each, in order).
    await Promise.all(
      statuses.map((s) =>
        audit({
          actor: reports[0]?.by === 'self' ? s.name : 'runtime',
          action: 'service.attest',
          target: s.name,
          outcome: isAttested(s.state) ? 'ok' : 'denied',
          ...(isAttested(s.state) ? {} : { code: 'ATTESTATION_MISMATCH' }),
          detail: { measured: s.measuredHash, expected: s.expectedHash },
        }),
      ),
    );
    await deps.onAttestation?.(deps.registry.list()).catch(() => undefined);
    const identities: Record<string, ServiceIdentity> = {};
    if (issueIdentity && deps.ca) {
      for (const s of statuses) {
        if (isAttested(s.state) && !revocations.quarantined(s.name))
          identities[s.name] = await issueServiceCertificate(deps.ca, { name: s.name });
      }
    }
    return { services: statuses, identities };
  };

  app.post<{ Params: { name: string }; Body: { hash: string } }>(
    '/v1/services/:name/self-report',
    {
      schema: {
        body: {
          type: 'object',
          required: ['hash'],
          additionalProperties: false,
          properties: { hash: { type: 'string', maxLength: 128 } },
        },
      },
    },
    async (request) => {
      requireLabToken(request);
      if (!deps.registry.acceptsSelfReports()) {
        throw new TrustedMsError(
          'POSTURE_MISMATCH',
          'self-reported hashes count only with attestation:self (the paper posture)',
        );
      }
      const { services } = await reportAndIssue(
        [{ name: request.params.name, hash: request.body.hash, by: 'self' }],
        false,
      );
      return services[0];
    },
  );

  // ---- admin API: how the CLI writes while the lab runs (the service is the store's only writer)

  app.register(async (admin) => {
    admin.addHook('onRequest', async (request) => requireLabToken(request));

    admin.post<{ Body: { reports: { name: string; hash: string }[]; issueIdentity?: boolean } }>(
      '/v1/admin/attestations',
      {
        schema: {
          body: {
            type: 'object',
            required: ['reports'],
            properties: {
              reports: {
                type: 'array',
                maxItems: 200,
                items: {
                  type: 'object',
                  required: ['name', 'hash'],
                  properties: { name: NAME, hash: { type: 'string', maxLength: 128 } },
                },
              },
              issueIdentity: { type: 'boolean' },
            },
          },
        },
      },
      async (request) =>
        reportAndIssue(
          request.body.reports.map((r) => ({ ...r, by: 'runtime' as const })),
          request.body.issueIdentity === true,
        ),
    );

    admin.post<{ Body: { services: { name: string; hash: string }[] } }>(
      '/v1/admin/services/register',
      {
        schema: {
          body: {
            type: 'object',
            required: ['services'],
            properties: {
              services: {
                type: 'array',
                maxItems: 200,
                items: {
                  type: 'object',
                  required: ['name', 'hash'],
                  properties: { name: NAME, hash: { type: 'string', maxLength: 128 } },
                },
              },
            },
          },
        },
      },
      async (request) => {
        const services = await deps.registry.register(request.body.services);
        await audit({
          actor: 'admin',
          action: 'service.register',
          outcome: 'ok',
          detail: { names: services.map((s) => s.name) },
        });
        await deps.onAttestation?.(deps.registry.list()).catch(() => undefined);
        return { services };
      },
    );

    admin.post<{ Params: { name: string } }>('/v1/admin/services/:name/identity', async (request) => {
      const status = deps.registry.get(request.params.name);
      if (!deps.ca)
        throw new TrustedMsError(
          'POSTURE_MISMATCH',
          'identities exist only with links:mtls (the trusted posture)',
        );
      // Asking for the identity of a service that is unknown or not attested is the caller's
      // mistake (4xx), not an outage: SERVICE_UNTRUSTED is a 503 (found by the fuzz suite).
      if (status === undefined) {
        throw new TrustedMsError(
          'SERVICE_NOT_FOUND',
          `no service named ${request.params.name.slice(0, 64)} is registered`,
        );
      }
      if (!isAttested(status.state)) {
        throw new TrustedMsError(
          'ATTESTATION_MISMATCH',
          `${request.params.name.slice(0, 64)} has not passed attestation`,
        );
      }
      if (revocations.quarantined(status.name)) {
        throw new TrustedMsError('PEER_QUARANTINED', `${status.name} is quarantined: it gets no identity`, {
          actions: [`trusted-ms service release ${status.name}`],
        });
      }
      return issueServiceCertificate(deps.ca, { name: request.params.name });
    });

    admin.post<{ Body: { name: string; role: string; password: string } }>(
      '/v1/admin/users',
      {
        schema: {
          body: {
            type: 'object',
            required: ['name', 'role', 'password'],
            additionalProperties: false,
            properties: {
              name: NAME,
              role: NAME,
              password: { type: 'string', minLength: 1, maxLength: 1024 },
            },
          },
        },
      },
      async (request) => {
        const banned = revocations.userRevoked(request.body.name);
        const user = toPublicUser(await addUser(store, request.body, { actor: 'admin' }));
        if (banned) await revocations.publish(); // the name of a removed user is free to log in again
        return user;
      },
    );
    admin.delete<{ Params: { name: string } }>('/v1/admin/users/:name', async (request) => {
      const user = toPublicUser(await removeUser(store, request.params.name, { actor: 'admin' }));
      await revocations.publish(); // its tickets go with it
      return user;
    });
    admin.post<{ Params: { name: string }; Body: { key: UserKey; replace?: boolean } }>(
      '/v1/admin/users/:name/keys',
      {
        schema: {
          body: {
            type: 'object',
            required: ['key'],
            properties: {
              replace: { type: 'boolean' },
              key: {
                type: 'object',
                required: ['thumbprint', 'type', 'publicKeyPem', 'createdAt'],
                additionalProperties: false,
                properties: {
                  thumbprint: B64URL,
                  type: { enum: ['ed25519', 'rsa'] },
                  bits: { type: 'integer' },
                  publicKeyPem: { type: 'string', maxLength: 4096 },
                  createdAt: { type: 'string', maxLength: 64 },
                },
              },
            },
          },
        },
      },
      async (request) => {
        const { key, replace } = request.body;
        if (replace) {
          const user = toPublicUser(
            await replaceUserKeys(store, request.params.name, key, { actor: 'admin' }),
          );
          await revocations.publish(); // the replaced keys' tickets go with them
          return user;
        }
        return toPublicUser(await addUserKey(store, request.params.name, key, { actor: 'admin' }));
      },
    );
    admin.delete<{ Params: { name: string; thumbprint: string } }>(
      '/v1/admin/users/:name/keys/:thumbprint',
      async (request) => {
        const r = await removeUserKey(store, request.params.name, request.params.thumbprint, {
          actor: 'admin',
        });
        await revocations.publish(); // the tickets bound to the key go with it
        return { user: toPublicUser(r.user), removed: r.removed, notBefore: r.notBefore };
      },
    );
    admin.post<{ Body: { text: string; role: string } }>(
      '/v1/admin/users/import',
      {
        bodyLimit: 1024 * 1024 + 4096,
        schema: {
          body: {
            type: 'object',
            required: ['text', 'role'],
            properties: { text: { type: 'string', maxLength: 1024 * 1024 }, role: NAME },
          },
        },
      },
      async (request) => {
        const imported = await importHtpasswd(store, request.body.text, request.body.role, {
          actor: 'admin',
        });
        if (imported.some((name) => revocations.userRevoked(name))) await revocations.publish();
        return { imported };
      },
    );
    admin.post<{ Params: { name: string }; Body: { password: string } }>(
      '/v1/admin/users/:name/check-password',
      {
        schema: {
          body: {
            type: 'object',
            required: ['password'],
            additionalProperties: false,
            properties: { password: { type: 'string', minLength: 1, maxLength: 1024 } },
          },
        },
      },
      async (request) => ({
        upgraded: (await checkPassword(store, request.params.name, request.body.password, { actor: 'admin' }))
          .upgraded,
      }),
    );
    admin.get<{ Params: { name: string } }>('/v1/admin/users/:name', async (request) =>
      toPublicUser(await getUser(store, request.params.name)),
    );
  });

  return app;
}
