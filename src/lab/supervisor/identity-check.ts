import { connect } from 'node:tls';
import type { ClientTlsOptions } from '../../pki/mtls.js';

/**
 * Whether what listens at `url` proves, in a TLS 1.3 handshake, the identity `tls` expects (the
 * lab CA's certificate with the right SPIFFE id): how the watchman tells a part it did not start
 * itself (someone else restarted it) from an impostor bound to the part's port. A plain listener,
 * a certificate of another CA or of another part, or no answer within `timeoutMs`, is not proof.
 */
export function provesIdentity(url: string, tls: ClientTlsOptions, timeoutMs = 1000): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect({ ...tls, host: hostname, port: Number(port) });
    const done = (proven: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(proven);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once('secureConnect', () => done(socket.authorized));
    socket.once('error', () => done(false));
  });
}
