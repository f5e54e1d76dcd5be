import type { TLSSocket } from 'node:tls';
import type { FastifyRequest } from 'fastify';
import { peerIdentity, type SpiffeParts } from '../../pki/spiffe.js';

/**
 * The part that made a request on the control-plane listener, from its verified certificate; none
 * for a request on the plain listener (logins, the CLI), whatever it says in its headers.
 */
export function controlPeerOf(request: FastifyRequest, labId: string): SpiffeParts | undefined {
  const socket = request.raw.socket as Partial<TLSSocket>;
  if (socket.encrypted !== true || socket.authorized !== true) return undefined;
  return peerIdentity(socket.getPeerX509Certificate?.(), labId) ?? undefined;
}
