import { randomBytes } from 'node:crypto';
import { permissionsOf } from '../../../policy/evaluate.js';
import type { TicketClaims, TicketKind } from '../../../protocol/ticket.js';
import type { UserRecord } from '../../../store/schema.js';
import type { LabStore } from '../../../store/store.js';
import type { SecurityContext } from '../context.js';

/** The claims of the ticket a login issues to this user, its role's permissions in them. */
export function ticketClaims(
  ctx: Pick<SecurityContext, 'now' | 'issuer' | 'audience' | 'ticketTtlSeconds'>,
  ticketKind: TicketKind,
  user: UserRecord,
  roles: Awaited<ReturnType<LabStore['data']>>['roles'],
  extra: Partial<TicketClaims>,
): TicketClaims {
  const role = Object.hasOwn(roles, user.role) ? roles[user.role] : undefined;
  const iat = Math.floor(ctx.now() / 1000);
  const claims: TicketClaims = {
    v: 1,
    iss: ctx.issuer,
    aud: ctx.audience,
    sub: user.name,
    role: user.role,
    perms: role ? permissionsOf(role) : {},
    iat,
    exp: iat + ctx.ticketTtlSeconds,
    jti: randomBytes(16).toString('base64url'),
    posture: ticketKind,
    ...extra,
  };
  return claims;
}
