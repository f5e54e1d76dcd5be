import {
  constants,
  createPublicKey,
  type KeyObject,
  privateEncrypt,
  publicDecrypt,
  timingSafeEqual,
} from 'node:crypto';
import NodeRSA from 'node-rsa';
import { TrustedMsError } from '../errors.js';
import { MIN_RSA_BITS } from './signature.js';

/**
 * The paper's literal login scheme, used only by the `paper` posture: the security service hands
 * the user a ticket, the user "encrypts it with the private key" (RSA PKCS#1 v1.5 type-1 padding,
 * i.e. a raw signature without a hash or DigestInfo), the service "decrypts it with the public key"
 * and compares. Kept to reproduce the paper and its weaknesses; the `trusted` posture signs
 * domain-separated challenges with Ed25519 or RSA-PSS instead (see signature.ts).
 *
 * A ticket longer than one block (k - 11 bytes for a k-byte modulus) is cut into blocks of at most
 * k - 11 bytes and the k-byte ciphertext blocks concatenated, as node-rsa does, so both engines
 * read each other's output.
 */
export type PaperEngine = 'node-crypto' | 'node-rsa';
export const PAPER_ENGINES: readonly PaperEngine[] = ['node-crypto', 'node-rsa'];

const PKCS1_OVERHEAD = 11;

export function paperEncrypt(
  privateKey: KeyObject,
  ticket: Uint8Array,
  engine: PaperEngine = 'node-crypto',
): Buffer {
  if (privateKey.type !== 'private') {
    throw new TrustedMsError('KEY_INVALID', 'the paper scheme encrypts with the private key');
  }
  const bytes = rsaModulusBytes(privateKey);
  assertEngine(engine);
  if (engine === 'node-rsa') return Buffer.from(nodeRsaFor(privateKey).encryptPrivate(ticket));
  // Split exactly as node-rsa 2 does: as few blocks as fit, of equal size (the last may be
  // shorter). Type-1 padding is deterministic, so both engines give the same bytes.
  const max = bytes - PKCS1_OVERHEAD;
  const count = Math.max(1, Math.ceil(ticket.length / max));
  const size = Math.max(1, Math.ceil(ticket.length / count));
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    out.push(
      privateEncrypt(
        { key: privateKey, padding: constants.RSA_PKCS1_PADDING },
        ticket.subarray(i * size, (i + 1) * size),
      ),
    );
  }
  return Buffer.concat(out);
}

/**
 * Recovers the ticket with the public key (a private key is reduced to its public half). Any
 * failure is a generic SIGNATURE_INVALID: the caller learns nothing about why.
 */
export function paperDecrypt(
  publicKey: KeyObject,
  data: Uint8Array,
  engine: PaperEngine = 'node-crypto',
): Buffer {
  const key = publicKey.type === 'private' ? createPublicKey(publicKey) : publicKey;
  const bytes = rsaModulusBytes(key);
  assertEngine(engine);
  if (data.length === 0 || data.length % bytes !== 0) throw decryptFailed();
  try {
    if (engine === 'node-rsa') return Buffer.from(nodeRsaFor(key).decryptPublic(data));
    const out: Buffer[] = [];
    for (let offset = 0; offset < data.length; offset += bytes) {
      out.push(
        publicDecrypt({ key, padding: constants.RSA_PKCS1_PADDING }, data.subarray(offset, offset + bytes)),
      );
    }
    return Buffer.concat(out);
  } catch (cause) {
    throw decryptFailed(cause);
  }
}

/** True when `data` decrypts with `publicKey` to exactly `expectedTicket`; false on any failure. */
export function paperVerify(
  publicKey: KeyObject,
  data: Uint8Array,
  expectedTicket: Uint8Array,
  engine: PaperEngine = 'node-crypto',
): boolean {
  let ticket: Buffer;
  try {
    ticket = paperDecrypt(publicKey, data, engine);
  } catch (err) {
    // A key the paper scheme cannot use is a configuration error, not a failed login.
    if (err instanceof TrustedMsError && err.code === 'KEY_TYPE_UNSUPPORTED') throw err;
    return false;
  }
  return ticket.length === expectedTicket.length && timingSafeEqual(ticket, expectedTicket);
}

function decryptFailed(cause?: unknown): TrustedMsError {
  return new TrustedMsError('SIGNATURE_INVALID', 'ticket check failed', cause === undefined ? {} : { cause });
}

function assertEngine(engine: PaperEngine): void {
  if (!PAPER_ENGINES.includes(engine)) {
    throw new TrustedMsError('INVALID_INPUT', `unknown paper engine "${String(engine)}"`);
  }
}

/** The modulus size in bytes of an RSA key of at least MIN_RSA_BITS; anything else is refused. */
function rsaModulusBytes(key: KeyObject): number {
  if (key.asymmetricKeyType !== 'rsa') {
    throw new TrustedMsError(
      'KEY_TYPE_UNSUPPORTED',
      `the paper posture needs an RSA key (this is a ${key.asymmetricKeyType ?? key.type} key)`,
      { actions: ['generate an RSA key with `trusted-ms user keygen <user> --type rsa`'] },
    );
  }
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < MIN_RSA_BITS) {
    throw new TrustedMsError(
      'KEY_TYPE_UNSUPPORTED',
      `the paper posture needs an RSA key of at least ${MIN_RSA_BITS} bits (this one has ${bits})`,
    );
  }
  return Math.ceil(bits / 8);
}

/** node-rsa keys are costly to import from PEM: keep one per KeyObject. */
const nodeRsaKeys = new WeakMap<KeyObject, NodeRSA>();

function nodeRsaFor(key: KeyObject): NodeRSA {
  let rsa = nodeRsaKeys.get(key);
  if (!rsa) {
    rsa =
      key.type === 'private'
        ? new NodeRSA(key.export({ type: 'pkcs8', format: 'pem' }).toString(), 'pkcs8-private-pem')
        : new NodeRSA(key.export({ type: 'spki', format: 'pem' }).toString(), 'pkcs8-public-pem');
    rsa.setOptions({ encryptionScheme: 'pkcs1' });
    nodeRsaKeys.set(key, rsa);
  }
  return rsa;
}
