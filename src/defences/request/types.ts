import type { IncomingHttpHeaders } from 'node:http';
import type { Action } from '../../policy/types.js';

/**
 * The `request` defence: what authenticates one request. Its three strategies (HTTP basic checked at
 * the gateway, a bearer ticket, a ticket bound to the session key by a proof per request) each have
 * a client side (the headers a session puts on a request), a gateway side (checks them and says what
 * to forward) and a service side (who the forwarded request acts for), all in this folder.
 */

/** One request as the gateway received it: the body as raw bytes, so a proof covers exactly them. */
export interface GatewayRequest {
  method: string;
  /** the path and query as sent, e.g. `/svc/orders/db/orders/records?x=1` */
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
  ip: string;
}

/** Who the gateway found the request to come from, and the headers that carry it to the service. */
export interface Authenticated {
  user: string;
  forward: Record<string, string>;
}

export interface GatewayAuthenticator {
  /**
   * Checks the request's credentials; throws a TrustedMsError with the refusal's code. `onUser` is
   * told the user as soon as it is known (for the refusal's log line), even when a later check fails.
   */
  authenticate(request: GatewayRequest, onUser?: (user: string) => void): Promise<Authenticated>;
}

/** Who a request reaching a service acts for, and the headers that carry it on to the peers it calls. */
export interface Principal {
  user: string;
  perms: Record<string, readonly Action[]>;
  forward: Record<string, string>;
}

export interface ServiceAuthenticator {
  authenticate(headers: IncomingHttpHeaders): Principal;
}

/** What a client's session holds that a request may be authenticated with. */
export interface SessionCredentials {
  user: string;
  /** request:basic: the HTTP basic credentials */
  basic?: string;
  /** request:bearer and request:bound: the ticket */
  ticket?: string;
  /** request:bound: the session key (base64url) that keys each request's proof */
  sessionKey?: string;
}

/** The token of an `authorization: Bearer <token>` header. */
export function bearer(header: string | undefined): string | undefined {
  if (header === undefined || header.length < 8 || header.slice(0, 7).toLowerCase() !== 'bearer ')
    return undefined;
  const token = header.slice(7);
  return token === '' ? undefined : token;
}
