import { createPrivateKey, X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { TrustedMsError } from '../../../src/errors.js';
import { createLabCa, type LabCa } from '../../../src/pki/ca.js';
import {
  issueServiceCertificate,
  parseSpiffeId,
  peerIdentity,
  peerName,
  spiffeId,
} from '../../../src/pki/identity.js';

let ca: LabCa;
let otherCa: LabCa;

beforeAll(async () => {
  [ca, otherCa] = await Promise.all([createLabCa({ labId: 'lab1' }), createLabCa({ labId: 'lab2' })]);
});

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(TrustedMsError);
    return (err as TrustedMsError).code;
  }
  throw new Error('expected a rejection');
}

describe('issueServiceCertificate', () => {
  it('issues a P-256 certificate that node:crypto parses, with the specified SANs, chained to the CA', async () => {
    const now = new Date('2030-01-10T12:00:00Z');
    const lab = await createLabCa({ labId: 'lab1', now: () => new Date('2030-01-01T00:00:00Z') });
    const id = await issueServiceCertificate(lab, { name: 'orders', now: () => now });
    const cert = new X509Certificate(id.certPem);
    const caCert = new X509Certificate(lab.certPem);

    expect(cert.verify(caCert.publicKey)).toBe(true);
    expect(cert.verify(new X509Certificate(ca.certPem).publicKey)).toBe(false);
    expect(cert.checkIssued(caCert)).toBe(true);
    expect(cert.ca).toBe(false);
    expect(cert.subject).toBe('CN=orders');
    expect(cert.subjectAltName).toBe('DNS:orders, URI:spiffe://trusted-ms/lab1/service/orders');
    expect(cert.checkHost('localhost')).toBeUndefined();
    expect(cert.keyUsage?.sort()).toEqual(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(cert.checkPrivateKey(createPrivateKey(id.keyPem))).toBe(true);
    // back-dated a day (CERT_BACKDATE_MS), for parts whose wall clock is behind the lab clock
    expect(new Date(cert.validFrom).toISOString()).toBe('2030-01-09T12:00:00.000Z');
    expect(new Date(cert.validTo).toISOString()).toBe('2030-01-10T13:00:00.000Z');
    expect(id.notAfter.toISOString()).toBe('2030-01-10T13:00:00.000Z');
    expect(id.spiffeId).toBe('spiffe://trusted-ms/lab1/service/orders');
    expect(id.name).toBe('orders');
    expect(id.keyPem).toMatch(/-----BEGIN PRIVATE KEY-----/);
  });

  it('uses a fresh key and serial per issue, and the kind in the SPIFFE id', async () => {
    const a = await issueServiceCertificate(ca, { name: 'gateway', kind: 'gateway' });
    const b = await issueServiceCertificate(ca, { name: 'gateway', kind: 'gateway' });
    expect(a.spiffeId).toBe('spiffe://trusted-ms/lab1/gateway/gateway');
    expect(a.keyPem).not.toBe(b.keyPem);
    expect(new X509Certificate(a.certPem).serialNumber).not.toBe(new X509Certificate(b.certPem).serialNumber);
  });

  it('never outlives the CA, and refuses to issue from an expired CA', async () => {
    const t0 = new Date('2030-01-01T00:00:00Z').getTime();
    const lab = await createLabCa({ labId: 'short', now: () => new Date(t0), validDays: 1 });
    const late = () => new Date(t0 + 86_400_000 - 1000);
    const id = await issueServiceCertificate(lab, { name: 'orders', now: late });
    expect(id.notAfter.getTime()).toBe(lab.notAfter.getTime());
    expect(
      await codeOf(
        issueServiceCertificate(lab, { name: 'orders', now: () => new Date(t0 + 2 * 86_400_000) }),
      ),
    ).toBe('INVALID_INPUT');
  });

  it('refuses bad names, kinds and lifetimes', async () => {
    for (const name of ['', 'Orders', 'a_b', 'x.y', '-a', 'a-', 'a'.repeat(64), '../x']) {
      expect(await codeOf(issueServiceCertificate(ca, { name }))).toBe('INVALID_NAME');
    }
    expect(await codeOf(issueServiceCertificate(ca, { name: 'a', kind: 'operator' as never }))).toBe(
      'INVALID_INPUT',
    );
    for (const ttlSeconds of [0, -1, 1.5, 86_401, Number.NaN]) {
      expect(await codeOf(issueServiceCertificate(ca, { name: 'a', ttlSeconds }))).toBe('INVALID_INPUT');
    }
  });
});

describe('peerName', () => {
  it('reads the name from the SPIFFE URI of this lab only', async () => {
    const id = await issueServiceCertificate(ca, { name: 'customers' });
    const other = await issueServiceCertificate(otherCa, { name: 'customers' });
    const cert = new X509Certificate(id.certPem);
    expect(peerName(cert, 'lab1')).toBe('customers');
    expect(peerIdentity(cert, 'lab1')).toEqual({ labId: 'lab1', kind: 'service', name: 'customers' });
    expect(peerName(new X509Certificate(other.certPem), 'lab1')).toBeNull();
    expect(peerName(cert, 'lab2')).toBeNull();
    // node:tls's PeerCertificate shape
    expect(peerName({ subjectaltname: cert.subjectAltName! }, 'lab1')).toBe('customers');
  });

  it('is null without a SPIFFE id, with two, or with a malformed one; the dNSName alone never counts', () => {
    const uri = 'URI:spiffe://trusted-ms/lab1/service/orders';
    expect(peerName(null, 'lab1')).toBeNull();
    expect(peerName({ subjectAltName: undefined }, 'lab1')).toBeNull();
    expect(peerName({ subjectAltName: 'DNS:orders' }, 'lab1')).toBeNull();
    expect(
      peerName({ subjectAltName: `${uri}, URI:spiffe://trusted-ms/lab1/service/admin` }, 'lab1'),
    ).toBeNull();
    expect(
      peerName({ subjectAltName: `${uri}, URI:"spiffe://trusted-ms/lab1/service/x, y"` }, 'lab1'),
    ).toBeNull();
    expect(peerName({ subjectAltName: 'URI:spiffe://trusted-ms/lab1/service/Orders' }, 'lab1')).toBeNull();
    expect(peerName({ subjectAltName: 'URI:spiffe://trusted-ms/lab1/root/orders' }, 'lab1')).toBeNull();
    expect(peerName({ subjectAltName: 'URI:spiffe://evil/lab1/service/orders' }, 'lab1')).toBeNull();
    expect(peerName({ subjectAltName: `${uri}/x` }, 'lab1')).toBeNull();
    expect(peerName({ subjectAltName: `DNS:x, ${uri}` }, 'lab1')).toBe('orders');
  });

  it('round-trips spiffeId / parseSpiffeId', () => {
    expect(parseSpiffeId(spiffeId('l-1', 'security', 'security'))).toEqual({
      labId: 'l-1',
      kind: 'security',
      name: 'security',
    });
    expect(parseSpiffeId('spiffe://trusted-ms/l/service/a-')).toBeNull();
  });
});
