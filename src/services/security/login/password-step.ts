import type { FastifyRequest } from 'fastify';
import { isTrustedMsError, TrustedMsError } from '../../../errors.js';
import type { UserRecord } from '../../../store/schema.js';
import { checkPassword } from '../../../users/users.js';
import type { SecurityContext } from '../context.js';

/**
 * A login's first step, the password, behind the address's rate and the smart lock-out of the
 * (user, address) and the address; then the revocation, told only to someone who knew the password.
 * A refusal and a wrong password answer alike whether the user exists or not.
 */
export async function passwordStep(
  ctx: SecurityContext,
  request: FastifyRequest,
  user: string,
  password: string,
): Promise<UserRecord> {
  const { perClient, lockout, uniformChecks } = ctx.loginLimits;
  const client = ctx.clientOf(request);
  const refuse = async (err: TrustedMsError): Promise<never> => {
    await ctx.audit({
      actor: client,
      action: 'auth.challenge',
      target: user,
      outcome: 'denied',
      code: err.code,
    });
    throw err;
  };
  if (perClient !== undefined && !perClient.take(client)) {
    return refuse(new TrustedMsError('RATE_LIMITED', 'too many login attempts from this address'));
  }
  try {
    await lockout?.check(user, client);
  } catch (err) {
    if (err instanceof TrustedMsError) return refuse(err);
    throw err;
  }
  try {
    const { user: record } = await checkPassword(ctx.store, user, password, {
      actor: client,
      uniform: uniformChecks,
    });
    await ctx.refuseRevoked(request, 'auth.challenge', user);
    return record;
  } catch (err) {
    // Only a wrong password counts towards the lock-out: a login refused because it could not be
    // audited (a full disk) must not lock the user out after space is back. A right password
    // forgives nothing yet: that waits for the key's signature (loginSucceeded).
    if (isTrustedMsError(err, 'AUTH_FAILED')) await lockout?.failed(user, client);
    throw err;
  }
}
