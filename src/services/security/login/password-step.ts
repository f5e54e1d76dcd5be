import type { FastifyRequest } from 'fastify';
import { isTrustedMsError, TrustedMsError } from '../../../errors.js';
import type { UserRecord } from '../../../store/schema.js';
import { checkPassword } from '../../../users/users.js';
import type { SecurityContext } from '../context.js';

/**
 * A login's first step, the password, behind the address's rate and the user's lock-out; then the
 * revocation, told only to someone who knew the password.
 */
export async function passwordStep(
  ctx: SecurityContext,
  request: FastifyRequest,
  user: string,
  password: string,
): Promise<UserRecord> {
  const { perClient, lockout } = ctx.loginLimits;
  const client = ctx.clientOf(request);
  if (perClient !== undefined && !perClient.take(client)) {
    await ctx.audit({
      actor: client,
      action: 'auth.challenge',
      target: user,
      outcome: 'denied',
      code: 'RATE_LIMITED',
    });
    throw new TrustedMsError('RATE_LIMITED', 'too many login attempts from this address');
  }
  if (lockout?.isLocked(user) === true) {
    await ctx.audit({
      actor: client,
      action: 'auth.challenge',
      target: user,
      outcome: 'denied',
      code: 'ACCOUNT_LOCKED',
    });
    throw new TrustedMsError('ACCOUNT_LOCKED', 'too many failed logins: try again later');
  }
  try {
    const { user: record } = await checkPassword(ctx.store, user, password, { actor: client });
    lockout?.succeed(user);
    await ctx.refuseRevoked(request, 'auth.challenge', user);
    return record;
  } catch (err) {
    // Only a wrong password counts towards the lock-out: a login refused because it could not be
    // audited (a full disk) must not lock the user out for ten minutes after space is back.
    if (isTrustedMsError(err, 'AUTH_FAILED')) lockout?.fail(user);
    throw err;
  }
}
