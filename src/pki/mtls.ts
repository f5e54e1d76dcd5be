import {
  createSecureContext,
  type PeerCertificate,
  type SecureContext,
  type SecureContextOptions,
  type TLSSocket,
} from 'node:tls';
import type { buildConnector } from 'undici';
import { TrustedMsError } from '../errors.js';
import {
  parseSpiffeId,
  peerIdentity,
  SERVICE_NAME_RE,
  type ServiceIdentity,
  type ServiceKind,
  type SpiffeParts,
} from './spiffe.js';

export type ServerTlsOptions = SecureContextOptions & {
  requestCert: true;
  rejectUnauthorized: true;
  minVersion: 'TLSv1.3';
};

/**
 * Options for `https.createServer` / `tls.createServer`: the service's identity, the lab CA as the
 * only trust anchor, and a client certificate required and verified during the handshake (TLS 1.3
 * only). Which peer may call what is decided per request by `authorizePeer`.
 */
export function serverTlsOptions(identity: ServiceIdentity, caPem: string): ServerTlsOptions {
  return {
    cert: identity.certPem,
    key: identity.keyPem,
    ca: caPem,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.3',
  };
}

/**
 * The time a peer certificate's end is judged at, per request: the later of this part's wall clock
 * and the lab clock (`labNow`, NaN while it is not known). The handshake is judged by OpenSSL on the
 * wall alone, and certificates are back-dated a day (CERT_BACKDATE_MS), so a part whose wall had
 * stepped back an hour took a certificate that had ended on the lab clock 70 s before (the fifth
 * clock red team, S1: an old identity's key and certificate, kept by whoever held them).
 */
export function certificateEndClock(labNow: () => number): () => Date {
  return () => {
    const wall = Date.now();
    const lab = labNow();
    return new Date(Number.isFinite(lab) && lab > wall ? lab : wall);
  };
}

interface PeerInfo {
  readonly peer: SpiffeParts | null;
  readonly notAfter: number;
}

// Parsing the certificates once per connection keeps the per-request check to a lookup.
const peers = new WeakMap<TLSSocket, PeerInfo>();

/**
 * The verified peer's service name, when `allowed` accepts it; otherwise PEER_CERTIFICATE_INVALID.
 * Refuses a connection whose certificate was not verified, a missing certificate, one without a
 * SPIFFE id of this server's lab (`labId`, by default the lab in the server's own certificate), and
 * one that expired after the connection was made (keep-alive connections outlive short certificates).
 * `allowed` is where a deny list or a per-route policy goes.
 */
export function authorizePeer(
  socket: TLSSocket,
  allowed: (peer: string, kind: ServiceKind) => boolean,
  opts: { labId?: string; now?: () => Date } = {},
): string {
  if (socket.authorized !== true) throw refused('the peer certificate was not verified');
  let info = peers.get(socket);
  if (info === undefined) {
    const cert = socket.getPeerX509Certificate();
    if (cert === undefined) throw refused('the peer presented no certificate');
    const labId = opts.labId ?? ownLab(socket);
    info = {
      peer: labId === null ? null : peerIdentity(cert, labId),
      notAfter: Date.parse(cert.validTo),
    };
    peers.set(socket, info);
  }
  const { peer } = info;
  if (peer === null) throw refused('the peer certificate names no service of this lab');
  if (peer.labId !== (opts.labId ?? peer.labId)) throw refused('the peer certificate is from another lab');
  const now = (opts.now ?? (() => new Date()))().getTime();
  if (!(now <= info.notAfter)) throw refused(`the certificate of peer "${peer.name}" has expired`);
  if (!allowed(peer.name, peer.kind)) throw refused(`peer "${peer.name}" is not authorized here`);
  return peer.name;
}

export type ClientTlsOptions = buildConnector.BuildOptions & {
  ca: string;
  cert: string;
  key: string;
  servername: string;
  secureContext: SecureContext;
  minVersion: 'TLSv1.3';
  rejectUnauthorized: true;
  checkServerIdentity: (hostname: string, cert: PeerCertificate) => Error | undefined;
};

/**
 * `connect` options for an undici `Agent`, `Pool` or `Client` calling the service `expectedPeer`:
 * presents this service's certificate, trusts the lab CA only, and replaces the host name check
 * (peers are reached at 127.0.0.1:port) with a check that the server's SPIFFE id names
 * `expectedPeer` in the same lab. TLS session resumption is off, so every new connection
 * re-checks the server's certificate (expiry included).
 *
 *     const agent = new Agent({ connect: clientTlsConnector(identity, caPem, 'customers') });
 */
export function clientTlsConnector(
  identity: ServiceIdentity,
  caPem: string,
  expectedPeer: string,
  /** also the kind of the server's SPIFFE id (a service named `security` is not the security service) */
  expectedKind?: ServiceKind,
  /**
   * When the server certificate's end is judged, besides OpenSSL's wall clock: a part's
   * `certificateEndClock` (the sixth clock red team, I: during a step back of an hour the gateway
   * took an impostor on accounts' port with accounts' old key and ended certificate, and sent it a
   * user's ticket).
   */
  endClock?: () => Date,
): ClientTlsOptions {
  const own = parseSpiffeId(identity.spiffeId);
  if (own === null) throw new TrustedMsError('INVALID_INPUT', 'this identity has no trusted-ms SPIFFE id');
  if (typeof expectedPeer !== 'string' || !SERVICE_NAME_RE.test(expectedPeer)) {
    throw new TrustedMsError('INVALID_NAME', `"${String(expectedPeer)}" cannot name a service`);
  }
  const labId = own.labId;
  const material = {
    ca: caPem,
    cert: identity.certPem,
    key: identity.keyPem,
    minVersion: 'TLSv1.3',
  } as const;
  return {
    ...material,
    // Built once: node would otherwise parse the PEMs into a new context on every connection
    // (~2 ms each measured here with OpenSSL 3, about half the cost of an mTLS handshake).
    secureContext: createSecureContext(material),
    // SNI: the name the server's certificate carries as dNSName (a hint; the check is below).
    servername: expectedPeer,
    rejectUnauthorized: true,
    maxCachedSessions: 0,
    checkServerIdentity: (_hostname, cert) => {
      const peer = peerIdentity(cert, labId);
      if (peer?.name !== expectedPeer || (expectedKind !== undefined && peer.kind !== expectedKind)) {
        return refused(`the server is not "${expectedPeer}" of this lab`);
      }
      if (endClock !== undefined && !(endClock().getTime() <= Date.parse(cert.valid_to))) {
        return refused(`the certificate of "${expectedPeer}" has ended (on the lab clock)`);
      }
      return undefined;
    },
  };
}

function ownLab(socket: TLSSocket): string | null {
  const own = socket.getX509Certificate();
  if (own === undefined) return null;
  const uri = /(?:^|, )URI:(spiffe:\/\/[^,\s"]+)/.exec(own.subjectAltName ?? '')?.[1];
  return uri === undefined ? null : (parseSpiffeId(uri)?.labId ?? null);
}

function refused(message: string): TrustedMsError {
  return new TrustedMsError('PEER_CERTIFICATE_INVALID', message);
}
