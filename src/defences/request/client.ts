import { TrustedMsError } from '../../errors.js';
import { createProof, PROOF_HEADER } from '../../protocol/proof.js';
import { decodeTicketUnverified } from '../../protocol/ticket.js';
import type { SessionCredentials } from './types.js';

/**
 * The client's side of the `request` defence: the headers a session puts on one request. What the
 * session holds says which strategy it logged in for: basic credentials, a ticket, or a ticket and
 * the session key that makes a fresh proof of possession for each request.
 */
export function requestHeaders(
  session: SessionCredentials,
  method: string,
  fullPath: string,
  body: string | undefined,
): Record<string, string> {
  if (session.basic !== undefined) return { authorization: `Basic ${session.basic}` };
  if (!session.ticket)
    throw new TrustedMsError('TICKET_MISSING', `${session.user} has no ticket: log in again`);
  const headers: Record<string, string> = { authorization: `Bearer ${session.ticket}` };
  if (session.sessionKey !== undefined) {
    headers[PROOF_HEADER] = createProof({
      sessionKey: Buffer.from(session.sessionKey, 'base64url'),
      method,
      path: fullPath,
      body: body ?? '',
      jti: decodeTicketUnverified(session.ticket).claims.jti,
    });
  }
  return headers;
}
