import type { Server, Socket } from 'node:net';
import type { ConnectionLimits } from '../defences/limits.js';

/** What the guard did, for a part's log and the tests. */
export interface ConnectionGuard {
  /** sockets closed at accept: their address held `perSource` already */
  readonly refusedOverShare: number;
  /** sockets closed because they sent nothing within `firstByteMs` */
  readonly closedSilent: number;
  /** open sockets of an address, now */
  heldBy(address: string): number;
}

/**
 * Holds each client address to its share of a server's sockets, and closes sockets that never
 * speak. Without it one address holding idle sockets took them all: 4,100 sockets that never sent a
 * byte filled the gateway's 4,096 (SERVER_LIMITS.maxConnections) and every other client was reset
 * (issue 15, item 4). Node closes a socket that has not sent its headers within 10 s
 * (SERVER_LIMITS.headersTimeoutMs; measured: a silent socket to a lab server was closed after
 * 10.0 s), but an attacker only has to open again what is closed; the share per address is what
 * keeps others in, and the 5 s of silence halves what one socket costs the attacker to hold.
 *
 * The count is by the address the socket comes from: behind one NAT or the Docker engine's port
 * relay, many clients are one address and share one share (docs/accounts.md says so).
 */
export function guardConnections(server: Server, limits: ConnectionLimits): ConnectionGuard {
  const held = new Map<string, number>();
  let refusedOverShare = 0;
  let closedSilent = 0;
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress ?? '';
    const n = held.get(address) ?? 0;
    if (n >= limits.perSource) {
      refusedOverShare += 1;
      socket.destroy();
      return;
    }
    held.set(address, n + 1);
    // bytesRead counts at the handle, so it also sees bytes the HTTP parser takes straight from it
    // (no 'data' events are emitted then).
    const silent = setTimeout(() => {
      if (socket.bytesRead === 0) {
        closedSilent += 1;
        socket.destroy();
      }
    }, limits.firstByteMs);
    silent.unref();
    socket.once('close', () => {
      clearTimeout(silent);
      const left = (held.get(address) ?? 1) - 1;
      if (left <= 0) held.delete(address);
      else held.set(address, left);
    });
  });
  return {
    get refusedOverShare() {
      return refusedOverShare;
    },
    get closedSilent() {
      return closedSilent;
    },
    heldBy: (address) => held.get(address) ?? 0,
  };
}
