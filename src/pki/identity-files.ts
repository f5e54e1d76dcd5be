import { X509Certificate } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileError } from '../disk-errors.js';
import { writeFileDurably } from '../fs-sync.js';
import type { ServiceIdentity } from './spiffe.js';

export const IDENTITY_CERT_FILE = 'cert.pem';
export const IDENTITY_KEY_FILE = 'key.pem';

/**
 * Writes a part's identity where it reads it, at start and on renewal: key 0600, folder 0700, each
 * file replaced atomically, the key first, so that a new certificate never comes with the old key
 * (a reader checks that the two match: src/pki/identity-watch.ts).
 */
export async function writeIdentity(
  dir: string,
  identity: Pick<ServiceIdentity, 'certPem' | 'keyPem'>,
): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const put = async (name: string, content: string, mode: number): Promise<void> => {
    const file = join(dir, name);
    await writeFileDurably(file, content, mode).catch((err: unknown) => {
      throw fileError(file, 'write', err);
    });
  };
  await put(IDENTITY_KEY_FILE, identity.keyPem, 0o600);
  await put(IDENTITY_CERT_FILE, identity.certPem, 0o644);
}

/** Reads an identity written by `writeIdentity`; name and expiry come from the certificate itself. */
export async function readIdentity(dir: string): Promise<ServiceIdentity> {
  const [certPem, keyPem] = await Promise.all([
    readFile(join(dir, IDENTITY_CERT_FILE), 'utf8'),
    readFile(join(dir, IDENTITY_KEY_FILE), 'utf8'),
  ]);
  const cert = new X509Certificate(certPem);
  const uri = /URI:(spiffe:\/\/[^,\s]+)/.exec(cert.subjectAltName ?? '')?.[1] ?? '';
  return {
    name: uri.split('/').pop() ?? '',
    certPem,
    keyPem,
    notAfter: new Date(cert.validTo),
    spiffeId: uri,
  };
}
