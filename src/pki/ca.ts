// @peculiar/x509 uses decorators that need the Reflect metadata API before it is loaded.
import 'reflect-metadata';
import {
  createPrivateKey,
  type KeyObject,
  X509Certificate as NodeX509Certificate,
  randomBytes,
  webcrypto,
} from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { chmod, type FileHandle, mkdir, open, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { readSecretFile } from '../crypto/secret-file.js';
import { errnoCode, TrustedMsError } from '../errors.js';
import { syncDir } from '../fs-sync.js';

/**
 * The lab's certificate authority: created at `lab up`, it signs the short-lived identity
 * certificates of the services whose attestation passed. ECDSA P-256, one level (pathLen 0).
 */
export interface LabCa {
  readonly labId: string;
  /** The self-signed CA certificate, PEM. This is the trust anchor every service is given. */
  readonly certPem: string;
  /** The CA private key, PKCS#8 PEM. Never leaves the security service and `ca-key.pem` (0600). */
  readonly keyPem: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** SHA-256 fingerprint of the certificate, colon-separated hex (as node:crypto prints it). */
  readonly fingerprint256: string;
}

export const CA_CERT_FILE = 'ca.pem';
export const CA_KEY_FILE = 'ca-key.pem';
export const DEFAULT_CA_VALID_DAYS = 30;
/** Lab ids become a SPIFFE path segment and part of the CA's name. */
export const LAB_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

const CN_PREFIX = 'trusted-ms lab CA ';
/**
 * Every certificate of the lab PKI (the CA and the identities) is valid from this long before its
 * issue. TLS checks a certificate on each peer's own wall clock, while identities are dated on the
 * lab clock: with 60 s, a part whose wall had stepped back an hour refused every certificate issued
 * since as "not yet valid" (the fourth clock red team, F2: the gateway restarted during a step back
 * of 1 h could not reach the security service and was given up on), and a lab started during a
 * forward step of 2 h had a CA and identities the corrected clock refused for 2 h (F4). A day
 * covers every step the fault model has; the CA/Browser Forum's rules allow back-dating up to 48 h.
 * It ends nothing later: when trust ends is `notAfter`, which stays issue + lifetime.
 */
export const CERT_BACKDATE_MS = 86_400_000;
const MAX_PEM_BYTES = 64 * 1024;
/** WebCrypto parameters of every key in the lab's PKI. */
export const EC_KEY_ALG = { name: 'ECDSA', namedCurve: 'P-256' } as const;
export const EC_SIGN_ALG = { name: 'ECDSA', hash: 'SHA-256' } as const;
/** The WebCrypto implementation handed to @peculiar/x509 (explicitly, not as a global). */
export const pkiCrypto = webcrypto as unknown as NonNullable<
  Parameters<typeof x509.X509CertificateGenerator.create>[1]
>;

export async function createLabCa(opts: {
  labId: string;
  now?: () => Date;
  validDays?: number;
}): Promise<LabCa> {
  assertLabId(opts.labId);
  const validDays = opts.validDays ?? DEFAULT_CA_VALID_DAYS;
  if (!Number.isInteger(validDays) || validDays < 1 || validDays > 3650) {
    throw new TrustedMsError(
      'INVALID_INPUT',
      'the CA validity must be a whole number of days from 1 to 3650',
    );
  }
  const now = (opts.now ?? (() => new Date()))().getTime();
  const keys = (await pkiCrypto.subtle.generateKey(EC_KEY_ALG, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: randomSerial(),
      name: [{ CN: [`${CN_PREFIX}${opts.labId}`] }],
      notBefore: new Date(now - CERT_BACKDATE_MS),
      notAfter: new Date(now + validDays * 86_400_000),
      signingAlgorithm: EC_SIGN_ALG,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, pkiCrypto),
      ],
    },
    pkiCrypto,
  );
  const pkcs8 = await pkiCrypto.subtle.exportKey('pkcs8', keys.privateKey);
  const certPem = cert.toString('pem');
  const keyPem = x509.PemConverter.encode(pkcs8, 'PRIVATE KEY');
  const ca = describeCa(opts.labId, certPem, keyPem);
  signers.set(ca, Promise.resolve({ signingKey: keys.privateKey, publicKey: keys.publicKey, cert }));
  return ca;
}

/**
 * Writes `ca-key.pem` (0600) and `ca.pem` (0644) into `dir` (created or narrowed to 0700), each
 * through a temp file in the same folder, fsynced and renamed into place. The key goes first, so
 * a `ca.pem` on disk always has its key next to it. Existing files are replaced.
 */
export async function saveLabCa(ca: LabCa, dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await chmod(dir, 0o700);
  } catch (err) {
    throw ioError(`cannot create the CA folder ${dir}`, err);
  }
  await writeAtomic(join(dir, CA_KEY_FILE), ca.keyPem, 0o600);
  await writeAtomic(join(dir, CA_CERT_FILE), ca.certPem, 0o644);
  await syncDir(dir);
}

/**
 * Loads the CA saved by `saveLabCa`, with ssh's rule for the key: a key file that group or others
 * may access is refused (KEY_PERMISSIONS_TOO_OPEN). The certificate must be a lab CA and match the key.
 */
export async function loadLabCa(dir: string): Promise<LabCa> {
  const keyPath = join(dir, CA_KEY_FILE);
  const certPath = join(dir, CA_CERT_FILE);
  const notFound = (path: string) =>
    new TrustedMsError('FILE_NOT_FOUND', `no lab CA file at ${path}`, {
      actions: ['start the lab with `trusted-ms lab up`, which creates the CA'],
    });
  const keyPem = await readSecretFile(keyPath, { maxBytes: MAX_PEM_BYTES, notFound });
  const certPem = await readSecretFile(certPath, {
    maxBytes: MAX_PEM_BYTES,
    notFound,
    shared: true,
    unreadableCode: 'STORE_IO',
  });
  let labId: string | undefined;
  try {
    const cn = /(?:^|\n)CN=(.*)$/m.exec(new NodeX509Certificate(certPem).subject)?.[1];
    labId = cn?.startsWith(CN_PREFIX) ? cn.slice(CN_PREFIX.length) : undefined;
  } catch (cause) {
    throw new TrustedMsError('KEY_INVALID', `${certPath} does not hold a valid PEM certificate`, { cause });
  }
  if (labId === undefined || !LAB_ID_RE.test(labId)) {
    throw new TrustedMsError('KEY_INVALID', `${certPath} is not a trusted-ms lab CA certificate`);
  }
  return describeCa(labId, certPem, keyPem);
}

/** What `issueServiceCertificate` needs from a CA, parsed once per `LabCa` object. @internal */
export interface CaSigner {
  signingKey: webcrypto.CryptoKey;
  publicKey: webcrypto.CryptoKey;
  cert: x509.X509Certificate;
}

const signers = new WeakMap<LabCa, Promise<CaSigner>>();

/** @internal */
export function caSigner(ca: LabCa): Promise<CaSigner> {
  let signer = signers.get(ca);
  if (signer === undefined) {
    signer = importSigner(ca);
    signers.set(ca, signer);
    signer.catch(() => signers.delete(ca));
  }
  return signer;
}

export function assertLabId(labId: string): void {
  if (typeof labId !== 'string' || !LAB_ID_RE.test(labId)) {
    throw new TrustedMsError('INVALID_INPUT', 'a lab id is 1-64 letters, digits, ".", "_" or "-"');
  }
}

/** A positive 128-bit serial number, hex (RFC 5280: at most 20 octets, non-negative). */
export function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return bytes.toString('hex');
}

async function importSigner(ca: LabCa): Promise<CaSigner> {
  const cert = new x509.X509Certificate(ca.certPem);
  try {
    const der = x509.PemConverter.decodeFirst(ca.keyPem);
    const signingKey = await pkiCrypto.subtle.importKey('pkcs8', der, EC_KEY_ALG, false, ['sign']);
    const publicKey = await cert.publicKey.export(EC_KEY_ALG, ['verify'], pkiCrypto);
    return { signingKey, publicKey, cert };
  } catch (cause) {
    throw new TrustedMsError('KEY_INVALID', 'the lab CA key is not a usable P-256 private key', { cause });
  }
}

/** Checks that the certificate is a P-256 CA for `labId` whose public key matches the private key. */
function describeCa(labId: string, certPem: string, keyPem: string): LabCa {
  let cert: NodeX509Certificate;
  let keyMatches: boolean;
  try {
    cert = new NodeX509Certificate(certPem);
    // checkPrivateKey compares the certificate's public key with the private key's.
    keyMatches = cert.checkPrivateKey(createPrivate(keyPem));
  } catch (cause) {
    throw new TrustedMsError('KEY_INVALID', 'the lab CA certificate or key cannot be parsed', { cause });
  }
  const details = cert.publicKey.asymmetricKeyDetails;
  if (!cert.ca || cert.publicKey.asymmetricKeyType !== 'ec' || details?.namedCurve !== 'prime256v1') {
    throw new TrustedMsError('KEY_INVALID', 'the lab CA certificate is not a P-256 CA certificate');
  }
  if (!keyMatches) {
    throw new TrustedMsError('KEY_INVALID', 'the lab CA key does not belong to the CA certificate');
  }
  return Object.freeze({
    labId,
    certPem,
    keyPem,
    notBefore: new Date(cert.validFrom),
    notAfter: new Date(cert.validTo),
    fingerprint256: cert.fingerprint256,
  });
}

function createPrivate(keyPem: string): KeyObject {
  if (!/-----BEGIN PRIVATE KEY-----/.test(keyPem)) {
    throw new TrustedMsError('KEY_INVALID', 'the lab CA key is not an unencrypted PKCS#8 PEM key');
  }
  // An empty passphrase makes an encrypted key fail instead of prompting.
  return createPrivateKey({ key: keyPem, format: 'pem', passphrase: '' });
}

async function writeAtomic(path: string, text: string, mode: number): Promise<void> {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  let handle: FileHandle | undefined;
  try {
    handle = await open(tmp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, mode);
    await handle.chmod(mode); // the umask may have narrowed 0644; 0600 it can only keep
    await handle.writeFile(text);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await rename(tmp, path);
  } catch (err) {
    await handle?.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw ioError(`cannot write ${path}`, err);
  }
}

function ioError(message: string, err: unknown): TrustedMsError {
  return new TrustedMsError('STORE_IO', `${message} (${errnoCode(err) ?? 'error'})`, { cause: err });
}
