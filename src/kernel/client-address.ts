import { isIP } from 'node:net';

/**
 * The header in which the gateway tells the security service who is really logging in.
 *
 * Every login reaches the security service through the gateway, so the socket address it sees is
 * always the gateway's: a per-address login limit keyed on it would let one flooding client lock
 * every user out. The gateway already sees the real client address, so it passes it on here.
 *
 * Why the lab token authenticates it: the gateway→security link is plain HTTP in every posture
 * (mTLS links only the gateway and the services in `trusted`), and in the process lab every part and
 * any local attacker share 127.0.0.1, so neither the socket address (fastify's `trustProxy`) nor a
 * client certificate can tell the gateway apart. The lab token can: a secret only the lab's own parts
 * and its admin hold (a 0600 file), which the security service already demands for its internal API.
 * Without the token the header is ignored and the socket address counts, so an attacker calling the
 * security service directly cannot pose as other clients to spread its attempts over many buckets.
 */
export const CLIENT_ADDRESS_HEADER = 'x-tms-client-address';

/** The address a login counts against: the gateway's word when it proved it is the gateway. */
export function clientAddressOf(
  socketAddress: string,
  header: string | string[] | undefined,
  fromGateway: boolean,
): string {
  if (!fromGateway || typeof header !== 'string' || isIP(header) === 0) return socketAddress;
  return header;
}
