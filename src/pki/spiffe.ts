import type { X509Certificate as NodeX509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';

/**
 * Service identities as SPIFFE ids, `spiffe://trusted-ms/<labId>/<kind>/<name>`, and how to read
 * one back from a peer's certificate. No certificate library here: services import this to check
 * peers without carrying the CA's issuing code.
 */
export type ServiceKind = 'service' | 'gateway' | 'security' | 'supervisor' | 'admin';
/**
 * `supervisor`: the watchman, which checks a restarted part by its certificate, not its port.
 * `admin`: the CLI and the watchman calling the admin API on the control-plane listener
 * (src/kernel/admin-channel.ts), minted on the host from the lab CA for each use.
 */
export const SERVICE_KINDS: readonly ServiceKind[] = [
  'service',
  'gateway',
  'security',
  'supervisor',
  'admin',
];

/** A service's identity: its certificate (signed by the lab CA) and the matching private key. */
export interface ServiceIdentity {
  name: string;
  certPem: string;
  /** PKCS#8 PEM. Handed to the service only; never stored. */
  keyPem: string;
  notAfter: Date;
  /** `spiffe://trusted-ms/<labId>/<kind>/<name>`: the identity peers check. */
  spiffeId: string;
}

export const SPIFFE_TRUST_DOMAIN = 'trusted-ms';
/** Service names are DNS labels: they are also the certificate's dNSName. */
export const SERVICE_NAME_RE = /^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const SPIFFE_RE =
  /^spiffe:\/\/trusted-ms\/([A-Za-z0-9][A-Za-z0-9._-]{0,63})\/(service|gateway|security|supervisor|admin)\/([a-z0-9-]{1,63})$/;

export interface SpiffeParts {
  labId: string;
  kind: ServiceKind;
  name: string;
}

export function spiffeId(labId: string, kind: ServiceKind, name: string): string {
  return `spiffe://${SPIFFE_TRUST_DOMAIN}/${labId}/${kind}/${name}`;
}

/** The parts of one of our SPIFFE ids, or null for anything else. */
export function parseSpiffeId(uri: string): SpiffeParts | null {
  const m = SPIFFE_RE.exec(uri);
  if (m === null || !SERVICE_NAME_RE.test(m[3]!)) return null;
  return { labId: m[1]!, kind: m[2] as ServiceKind, name: m[3]! };
}

/** A certificate as node:crypto (`X509Certificate`) or node:tls (`getPeerCertificate()`) gives it. */
export type PeerCertificateLike =
  | Pick<NodeX509Certificate, 'subjectAltName'>
  | Pick<PeerCertificate, 'subjectaltname'>;

/**
 * The SPIFFE id of a certificate, the single source of a peer's identity: exactly one `spiffe://`
 * URI SAN, ours, in lab `labId`. Anything else (none, two, another lab, malformed) is null.
 * The certificate's chain must have been verified already (the TLS layer does it).
 */
export function peerIdentity(
  cert: PeerCertificateLike | null | undefined,
  labId: string,
): SpiffeParts | null {
  if (cert === null || cert === undefined) return null;
  const san = 'subjectAltName' in cert ? cert.subjectAltName : cert.subjectaltname;
  if (typeof san !== 'string' || san === '') return null;
  // node prints "DNS:a, URI:b"; values with separators or quotes in them are JSON-quoted, so a
  // quoted value never matches our (unquoted) pattern but still counts as a SPIFFE URI below.
  const spiffe = san
    .split(', ')
    .filter((entry) => entry.startsWith('URI:'))
    .map((entry) => entry.slice(4))
    .filter((value) => /^"?spiffe:/i.test(value));
  if (spiffe.length !== 1) return null;
  const parts = parseSpiffeId(spiffe[0]!);
  return parts !== null && parts.labId === labId ? parts : null;
}

/** The service name in a certificate's SPIFFE id, or null if absent, ambiguous or from another lab. */
export function peerName(cert: PeerCertificateLike | null | undefined, labId: string): string | null {
  return peerIdentity(cert, labId)?.name ?? null;
}
