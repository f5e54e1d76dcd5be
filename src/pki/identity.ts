// @peculiar/x509 uses decorators that need the Reflect metadata API before it is loaded.
import 'reflect-metadata';
import type { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { TrustedMsError } from '../errors.js';
import {
  assertLabId,
  CERT_BACKDATE_MS,
  caSigner,
  EC_KEY_ALG,
  EC_SIGN_ALG,
  type LabCa,
  pkiCrypto,
  randomSerial,
} from './ca.js';
import {
  SERVICE_KINDS,
  SERVICE_NAME_RE,
  type ServiceIdentity,
  type ServiceKind,
  spiffeId,
} from './spiffe.js';

/** What `issueServiceCertificate` gives when not told (the attacks' rogue certificates, tests). */
export const DEFAULT_CERT_TTL_SECONDS = 3600;
/**
 * A lab's identities: minutes, not hours. Each is renewed at half-life only after a fresh trusted
 * measurement (src/lab/supervisor/renewal.ts), so this bounds how long a certificate outlives a
 * lost trust when everything else fails. `lab up --identity-ttl` sets it per lab.
 */
export const DEFAULT_LAB_CERT_TTL_SECONDS = 300;
export const MAX_CERT_TTL_SECONDS = 86_400;
/**
 * Shortest lifetime `lab up` accepts: renewal looks every second and then measures, asks and
 * writes (well under a second here); ten seconds leave a half-life of five for that and a reload.
 */
export const MIN_LAB_CERT_TTL_SECONDS = 10;

/** A lab's identity lifetime, checked: INVALID_INPUT unless whole seconds in the range lab up accepts. */
export function labIdentityTtl(seconds: number | undefined): number {
  const ttl = seconds ?? DEFAULT_LAB_CERT_TTL_SECONDS;
  if (!Number.isInteger(ttl) || ttl < MIN_LAB_CERT_TTL_SECONDS || ttl > MAX_CERT_TTL_SECONDS) {
    throw new TrustedMsError(
      'INVALID_INPUT',
      `an identity lifetime is a whole number of seconds from ${MIN_LAB_CERT_TTL_SECONDS} to ${MAX_CERT_TTL_SECONDS}`,
      { actions: [`for example --identity-ttl ${DEFAULT_LAB_CERT_TTL_SECONDS}`] },
    );
  }
  return ttl;
}
/** Host names and IP addresses a certificate carries besides the part's own name (SAN). */
export interface ServerNames {
  readonly dns?: readonly string[];
  readonly ip?: readonly string[];
}

/**
 * Issues a short-lived identity certificate for a service whose attestation passed: a fresh P-256
 * key each time, SAN dNSName = name and URI = its SPIFFE id, EKU serverAuth + clientAuth, valid
 * from now - CERT_BACKDATE_MS (a day: clocks behind) to now + ttl, never beyond the CA's own expiry.
 */
export async function issueServiceCertificate(
  ca: LabCa,
  opts: {
    name: string;
    ttlSeconds?: number;
    now?: () => Date;
    kind?: ServiceKind;
    /** more names the certificate answers for (the gateway's edge: 127.0.0.1 and localhost) */
    serverNames?: ServerNames;
  },
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
      notBefore: new Date(now - CERT_BACKDATE_MS),
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
          ...(opts.serverNames?.dns ?? []).map((value) => ({ type: 'dns' as const, value })),
          ...(opts.serverNames?.ip ?? []).map((value) => ({ type: 'ip' as const, value })),
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

// Parsing lives in spiffe.ts (no x509 dependency, so the service bundle stays small); re-exported here.
export * from './spiffe.js';
