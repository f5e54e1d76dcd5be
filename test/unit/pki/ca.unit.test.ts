import { createPrivateKey, X509Certificate } from 'node:crypto';
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TrustedMsError } from '../../../src/errors.js';
import { createLabCa, type LabCa, loadLabCa, saveLabCa } from '../../../src/pki/ca.js';
import { issueServiceCertificate } from '../../../src/pki/identity.js';

const PRIVATE_KEY = /-----BEGIN PRIVATE KEY-----/;
let root: string;
let ca: LabCa;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'tms-pki-ca-'));
  ca = await createLabCa({ labId: 'lab1' });
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
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

describe('createLabCa', () => {
  it('makes a self-signed P-256 CA with pathLen 0 and keyCertSign|cRLSign', () => {
    const cert = new X509Certificate(ca.certPem);
    expect(cert.subject).toBe('CN=trusted-ms lab CA lab1');
    expect(cert.issuer).toBe(cert.subject);
    expect(cert.ca).toBe(true);
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(cert.checkPrivateKey(createPrivateKey(ca.keyPem))).toBe(true);
    expect(ca.keyPem).toMatch(PRIVATE_KEY);
    expect(ca.labId).toBe('lab1');
    expect(ca.fingerprint256).toBe(cert.fingerprint256);
  });

  it('uses the injected clock and validity', async () => {
    const now = new Date('2030-01-01T00:00:00Z');
    const c = await createLabCa({ labId: 'lab2', now: () => now, validDays: 2 });
    // back-dated a day (CERT_BACKDATE_MS): a part whose wall clock is behind still takes it
    expect(c.notBefore.toISOString()).toBe('2029-12-31T00:00:00.000Z');
    expect(c.notAfter.toISOString()).toBe('2030-01-03T00:00:00.000Z');
  });

  it('refuses a bad lab id or validity', async () => {
    expect(await codeOf(createLabCa({ labId: '../x' }))).toBe('INVALID_INPUT');
    expect(await codeOf(createLabCa({ labId: 'ok', validDays: 0 }))).toBe('INVALID_INPUT');
  });
});

describe('saveLabCa / loadLabCa', () => {
  it('writes ca-key.pem 0600, ca.pem 0644 in a 0700 folder, no temp files left, and loads it back', async () => {
    const dir = join(root, 'a', 'pki');
    await saveLabCa(ca, dir);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect((await stat(join(dir, 'ca-key.pem'))).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, 'ca.pem'))).mode & 0o777).toBe(0o644);
    expect((await readdir(dir)).sort()).toEqual(['ca-key.pem', 'ca.pem']);
    const loaded = await loadLabCa(dir);
    expect(loaded.labId).toBe('lab1');
    expect(loaded.certPem).toBe(ca.certPem);
    expect(loaded.notAfter.getTime()).toBe(ca.notAfter.getTime());
    // The loaded CA can issue, and what it issues chains to the original certificate.
    const id = await issueServiceCertificate(loaded, { name: 'orders' });
    expect(new X509Certificate(id.certPem).verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);
  });

  it('refuses a key file readable by group or others, naming chmod 600 and never printing the key', async () => {
    const dir = join(root, 'open');
    await saveLabCa(ca, dir);
    await chmod(join(dir, 'ca-key.pem'), 0o644);
    const err = await loadLabCa(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TrustedMsError);
    expect((err as TrustedMsError).code).toBe('KEY_PERMISSIONS_TOO_OPEN');
    expect((err as TrustedMsError).message).toMatch(/chmod 600/);
    expect((err as TrustedMsError).message).not.toMatch(PRIVATE_KEY);
    await chmod(join(dir, 'ca-key.pem'), 0o640);
    expect(await codeOf(loadLabCa(dir))).toBe('KEY_PERMISSIONS_TOO_OPEN');
  });

  it('refuses a missing CA, a key of another CA, and a non-CA certificate', async () => {
    expect(await codeOf(loadLabCa(join(root, 'none')))).toBe('FILE_NOT_FOUND');

    const other = await createLabCa({ labId: 'lab1' });
    const dir = join(root, 'mixed');
    await saveLabCa(ca, dir);
    await writeFile(join(dir, 'ca-key.pem'), other.keyPem, { mode: 0o600 });
    expect(await codeOf(loadLabCa(dir))).toBe('KEY_INVALID');

    const leaf = await issueServiceCertificate(ca, { name: 'orders' });
    const dir2 = join(root, 'leaf');
    await saveLabCa({ ...ca, certPem: leaf.certPem, keyPem: leaf.keyPem }, dir2);
    expect(await codeOf(loadLabCa(dir2))).toBe('KEY_INVALID');
    expect(await readFile(join(dir2, 'ca.pem'), 'utf8')).toBe(leaf.certPem);
  });
});
