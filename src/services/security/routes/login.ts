import { randomBytes } from 'node:crypto';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { paperVerify } from '../../../crypto/paper-scheme.js';
import { ticketKindOf } from '../../../defences/presets.js';
import { TrustedMsError } from '../../../errors.js';
import { newChallenge, signatureFromWire, verifyChallengeSignature } from '../../../protocol/challenge.js';
import { deriveSessionKey, newExchangeKeyPair, sealSessionKey } from '../../../protocol/session-key.js';
import { issueTicket } from '../../../protocol/ticket.js';
import { CHALLENGE_REQUEST_BODY, VERIFY_REQUEST_BODY } from '../../../protocol/wire-schemas.js';
import type { UserKey } from '../../../store/schema.js';
import type { SecurityContext } from '../context.js';
import { passwordStep } from '../login/password-step.js';
import { pendingLoginsFor } from '../login/pending-logins.js';
import { ticketClaims } from '../login/ticket-claims.js';
import { userPublicKeys } from '../login/user-public-keys.js';

/**
 * The login (docs/protocol.md): the password, then a signed challenge (login:challenge) or the
 * paper's encrypted ticket (login:paper), and the session ticket every other part verifies offline.
 */
export const loginRoutes: FastifyPluginAsync<SecurityContext> = async (app, ctx) => {
  const { now, store, audit, clientOf } = ctx;
  const { login } = ctx.defences;
  // The ticket a login here issues: the paper's bearer ticket, or one bound to a session key.
  const ticketKind = ticketKindOf(login) ?? 'paper';
  // Shared with the other replicas when the store is: the second step may reach another one.
  const pending = pendingLoginsFor(store.replicas?.pendingLogins, now);
  const publicKeyOf = userPublicKeys();

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
      await pending.sweep();
      const { user, password, clientKey } = request.body;
      if (login === 'challenge' && clientKey === undefined) {
        throw new TrustedMsError('INVALID_INPUT', 'clientKey (an X25519 public key) is required');
      }
      const record = await passwordStep(ctx, request, user, password);
      if (login !== 'challenge') {
        if (!record.keys.some((k) => k.type === 'rsa')) {
          throw new TrustedMsError('KEY_NOT_FOUND', `${user} has no RSA key: the paper's scheme needs one`, {
            actions: [`trusted-ms user keygen ${user} --type rsa`],
          });
        }
        const id = randomBytes(16).toString('base64url');
        const expiresAt = Math.floor(now() / 1000) + ctx.challengeTtlSeconds;
        const ticket = randomBytes(32);
        await audit({ actor: clientOf(request), action: 'auth.challenge', target: user, outcome: 'ok' });
        await pending.add(id, { kind: 'encrypted-ticket', id, user, ticket, expiresAt });
        return { posture: 'paper', id, user, ticket: ticket.toString('base64url'), expiresAt };
      }
      if (record.keys.length === 0) {
        throw new TrustedMsError('KEY_NOT_FOUND', `${user} has no registered key`, {
          actions: [`trusted-ms user keygen ${user}`],
        });
      }
      const challenge = newChallenge(user, ctx.issuer, clientKey as string, ctx.challengeTtlSeconds, now);
      await audit({ actor: clientOf(request), action: 'auth.challenge', target: user, outcome: 'ok' });
      await pending.add(challenge.id, { kind: 'signed-challenge', challenge });
      return { posture: 'trusted', ...challenge };
    },
  );

  app.post<{ Body: { id: string; signature: string } }>(
    '/v1/auth/verify',
    { schema: { body: VERIFY_REQUEST_BODY } },
    async (request) => {
      const { id, signature } = request.body;
      const p = await pending.take(id);
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
      const client = clientOf(request);
      const { lockout } = ctx.loginLimits;
      const deny = async (err: TrustedMsError): Promise<never> => {
        // A password answered with the wrong key (a stolen password) counts like a wrong password.
        if (err.code === 'SIGNATURE_INVALID') await lockout?.failed(user, client);
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
      await ctx.refuseRevoked(request, 'auth.verify', user);
      const sig = signatureFromWire(signature);

      if (p.kind === 'encrypted-ticket') {
        if (p.expiresAt * 1000 <= now())
          return deny(new TrustedMsError('CHALLENGE_EXPIRED', 'challenge expired'));
        const key = record.keys.find((k) => k.type === 'rsa' && paperVerify(publicKeyOf(k), sig, p.ticket));
        if (!key) return deny(new TrustedMsError('SIGNATURE_INVALID', 'signature verification failed'));
        await lockout?.succeeded(user, client);
        const claims = ticketClaims(ctx, ticketKind, record, data.roles, {});
        await audit({
          actor: clientOf(request),
          action: 'auth.verify',
          target: user,
          outcome: 'allowed',
          detail: { jti: claims.jti },
        });
        return {
          ticket: issueTicket(ctx.signingKey, claims),
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
            expectedAudience: ctx.issuer,
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
      await lockout?.succeeded(user, client);
      const exchange = newExchangeKeyPair();
      const sessionKey = deriveSessionKey(exchange.privateKey, p.challenge.clientKey, p.challenge.id);
      const jti = randomBytes(16).toString('base64url');
      const claims = ticketClaims(ctx, ticketKind, record, data.roles, {
        jti,
        cnf: { jkt: matched.thumbprint, sk: sealSessionKey(ctx.sealKey, sessionKey, jti) },
      });
      await audit({
        actor: clientOf(request),
        action: 'auth.verify',
        target: user,
        outcome: 'allowed',
        detail: { jti },
      });
      return {
        ticket: issueTicket(ctx.signingKey, claims),
        expiresAt: claims.exp,
        serverKey: exchange.publicKeyRaw,
        thumbprint: matched.thumbprint,
      };
    },
  );
};

/** The login steps, as registered (`METHOD /path`). */
const LOGIN_STEPS = new Set(['POST /v1/auth/challenge', 'POST /v1/auth/verify']);

/**
 * An `onRequest` hook for a listener that must not take the login steps (the plain port when the
 * gateway relays them on the control plane): refused before the body is read or a password hashed,
 * and audited, so that a try past the gateway costs the service little and is seen.
 */
export function refuseLoginsPastTheGateway(ctx: SecurityContext) {
  return async (request: FastifyRequest): Promise<void> => {
    const route = `${request.method} ${request.routeOptions.url ?? ''}`;
    if (!LOGIN_STEPS.has(route)) return;
    await ctx.audit({
      actor: request.ip,
      action: route.endsWith('/verify') ? 'auth.verify' : 'auth.challenge',
      outcome: 'denied',
      code: 'LOGIN_VIA_GATEWAY_ONLY',
    });
    throw new TrustedMsError('LOGIN_VIA_GATEWAY_ONLY', 'logins are taken only from the gateway', {
      actions: ['log in through the gateway (trusted-ms user login <name>; lab status --json: gatewayUrl)'],
    });
  };
}
