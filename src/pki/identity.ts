// @peculiar/x509 uses decorators that need the Reflect metadata API before it is loaded.
import 'reflect-metadata';
import type { X509Certificate as NodeX509Certificate, webcrypto } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import * as x509 from '@peculiar/x509';
import { TrustedMsError } from '../errors.js';
import { assertLabId, caSigner, EC_KEY_ALG, EC_SIGN_ALG, type LabCa, pkiCrypto, randomSerial } from './ca.js';

export type ServiceKind = 'service' | 'gateway' | 'security';
export const SERVICE_KINDS: readonly ServiceKind[] = ['service', 'gateway', 'security'];

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
export const DEFAULT_CERT_TTL_SECONDS = 3600;
export const MAX_CERT_TTL_SECONDS = 86_400;
const CLOCK_SKEW_MS = 60_000;
const SPIFFE_RE =
  /^spiffe:\/\/trusted-ms\/([A-Za-z0-9][A-Za-z0-9._-]{0,63})\/(service|gateway|security)\/([a-z0-9-]{1,63})$/;

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

/**
 * Issues a short-lived identity certificate for a service whose attestation passed: a fresh P-256
 * key each time, SAN dNSName = name and URI = its SPIFFE id, EKU serverAuth + clientAuth, valid
 * from now - 60 s (clock skew) to now + ttl, never beyond the CA's own expiry.
 */
export async function issueServiceCertificate(
  ca: LabCa,
  opts: { name: string; ttlSeconds?: number; now?: () => Date; kind?: ServiceKind },
): Promise<ServiceIdentity> {
  const { name } = opts;
  const kind = opts.kind ?? 'service';
  if (typeof name !== 'string' || !SERVICE_NAME_RE.test(name)) {
    throw new TrustedMsError('INVALID_NAME', `"${String(name)}" cannot name a service`, {
      actions: [`pick a name matching ${SERVICE_NAME_RE.source}`],
    });
  }
  if (!SERVICE_KINDS.includes(kind)) {
    throw new TrustedMsError('INVALID_INPUT', `unknown service kind "${String(kind)}"`);
  }
  assertLabId(ca.labId);
  const ttl = opts.ttlSeconds ?? DEFAULT_CERT_TTL_SECONDS;
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_CERT_TTL_SECONDS) {
    throw new TrustedMsError(
      'INVALID_INPUT',
      `a certificate lifetime is a whole number of seconds from 1 to ${MAX_CERT_TTL_SECONDS}`,
    );
  }
  const now = (opts.now ?? (() => new Date()))().getTime();
  if (now >= ca.notAfter.getTime()) {
    throw new TrustedMsError('INVALID_INPUT', 'the lab CA has expired: no certificate can be issued', {
      actions: ['recreate the lab: `trusted-ms lab down && trusted-ms lab up`'],
    });
  }
  const notAfter = new Date(Math.min(now + ttl * 1000, ca.notAfter.getTime()));
  const id = spiffeId(ca.labId, kind, name);

  const signer = await caSigner(ca);
  const keys = (await pkiCrypto.subtle.generateKey(EC_KEY_ALG, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: randomSerial(),
      subject: [{ CN: [name] }],
      issuer: signer.cert.subjectName,
      notBefore: new Date(now - CLOCK_SKEW_MS),
      notAfter,
      signingAlgorithm: EC_SIGN_ALG,
      publicKey: keys.publicKey,
      signingKey: signer.signingKey,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([
          x509.ExtendedKeyUsage.serverAuth,
          x509.ExtendedKeyUsage.clientAuth,
        ]),
        new x509.SubjectAlternativeNameExtension([
          { type: 'dns', value: name },
          { type: 'url', value: id },
        ]),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, pkiCrypto),
        await x509.AuthorityKeyIdentifierExtension.create(signer.publicKey, false, pkiCrypto),
      ],
    },
    pkiCrypto,
  );
  const pkcs8 = await pkiCrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return {
    name,
    certPem: cert.toString('pem'),
    keyPem: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY'),
    notAfter: cert.notAfter,
    spiffeId: id,
  };
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
