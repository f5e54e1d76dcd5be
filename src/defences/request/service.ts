import type { IncomingHttpHeaders } from 'node:http';
import { TrustedMsError } from '../../errors.js';
import { ACTIONS, type Action } from '../../policy/types.js';
import type { RevocationView } from '../../protocol/revocation-list.js';
import type { TicketVerifier } from '../../protocol/ticket.js';
import { bearer, type Principal, type ServiceAuthenticator } from './types.js';

const ACTION_SET: ReadonlySet<string> = new Set(ACTIONS);

/**
 * `request:basic` at a service: the gateway vouches for the user in `x-tms-user`, `x-tms-role` and
 * `x-tms-perms`, and the service believes it (anyone who reaches the service can say the same).
 */
export const GATEWAY_VOUCHES: ServiceAuthenticator = Object.freeze({
  authenticate(headers: IncomingHttpHeaders): Principal {
    const { 'x-tms-user': user, 'x-tms-role': role, 'x-tms-perms': permsHeader } = headers;
    if (typeof user !== 'string' || typeof role !== 'string' || typeof permsHeader !== 'string') {
      throw new TrustedMsError('TICKET_MISSING', 'no user');
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(permsHeader);
    } catch {
      parsed = undefined;
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new TrustedMsError('TICKET_INVALID', 'malformed permissions');
    }
    const perms: Record<string, Action[]> = Object.create(null);
    for (const [db, actions] of Object.entries(parsed)) {
      if (!Array.isArray(actions) || actions.some((a) => typeof a !== 'string' || !ACTION_SET.has(a))) {
        throw new TrustedMsError('TICKET_INVALID', 'malformed permissions');
      }
      perms[db] = actions as Action[];
    }
    return {
      user,
      perms,
      forward: { 'x-tms-user': user, 'x-tms-role': role, 'x-tms-perms': permsHeader },
    };
  },
});

/**
 * `request:bearer` and `request:bound` at a service: the service checks the ticket itself, whatever
 * the gateway did (signature, expiry, audience, not revoked), and acts on the permissions it
 * carries. The proof of possession is the gateway's to check: it covers the request as the client
 * sent it, which a service behind the gateway does not see.
 */
export class TicketAtService implements ServiceAuthenticator {
  constructor(
    private readonly verifier: TicketVerifier,
    private readonly revocations?: RevocationView,
  ) {}

  authenticate(headers: IncomingHttpHeaders): Principal {
    const authorization = headers.authorization;
    const claims = this.verifier.verify(bearer(authorization) ?? '');
    if (this.revocations?.ticketRevoked(claims) === true) {
      throw new TrustedMsError('TICKET_REVOKED', 'ticket revoked');
    }
    return { user: claims.sub, perms: claims.perms, forward: { authorization: authorization as string } };
  }
}
