import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { TrustedMsError } from '../errors.js';
import { describeKey, parsePublicKeyPem } from './keys.js';

/** What `user key add` reads: a key file is a few KiB; an OpenSSH RSA-16384 line is ~2.8 KiB. */
export const MAX_PUBLIC_KEY_INPUT_BYTES = 64 * 1024;

export type PublicKeyFormat = 'pem' | 'openssh' | 'jwk';

/**
 * A public key the user made elsewhere, in one of the forms people have them in: PEM (SPKI, or
 * PKCS#1 `RSA PUBLIC KEY`), an OpenSSH public key line (`ssh-ed25519 AAAA... comment`, as in
 * `~/.ssh/id_ed25519.pub` and GitHub's key list) or a JWK. The key must be Ed25519 or RSA of 2048
 * bits and more (describeKey); a private key in any of the forms is refused, never parsed further.
 */
export function parsePublicKeyInput(text: string): { key: KeyObject; format: PublicKeyFormat } {
  if (text.length > MAX_PUBLIC_KEY_INPUT_BYTES) {
    throw new TrustedMsError(
      'KEY_INVALID',
      `a public key is a few KiB at most; this is ${text.length} bytes`,
    );
  }
  const t = text.trim();
  if (t === '') throw new TrustedMsError('KEY_INVALID', 'no public key given: the input is empty');
  if (t.startsWith('-----BEGIN')) {
    if (/-----BEGIN OPENSSH PRIVATE KEY-----/.test(t)) throw privateGiven('an OpenSSH private key', '.pub');
    return { key: parsePublicKeyPem(t), format: 'pem' };
  }
  if (t.startsWith('{')) return { key: parseJwk(t), format: 'jwk' };
  return { key: parseOpenSshLine(t), format: 'openssh' };
}

function privateGiven(what: string, hint: string): TrustedMsError {
  return new TrustedMsError('KEY_INVALID', `this is ${what}: give the public key instead`, {
    actions: [
      `give the public half (for ssh-keygen keys, the file ending in ${hint}; else \`openssl pkey -pubout\`)`,
      'keep the private key secret; make a new key pair if it was shared',
    ],
  });
}

// ---- JWK (RFC 7517/7518/8037)

/** Members that only a private JWK has (RFC 7518 §6.2.2, §6.3.2; RFC 8037 §2). */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth'] as const;

function parseJwk(text: string): KeyObject {
  let jwk: unknown;
  try {
    jwk = JSON.parse(text);
  } catch {
    throw new TrustedMsError('KEY_INVALID', 'the input starts like a JWK but is not valid JSON');
  }
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) {
    throw new TrustedMsError('KEY_INVALID', 'a JWK is a JSON object');
  }
  const o = jwk as Record<string, unknown>;
  if (Array.isArray(o.keys)) {
    throw new TrustedMsError('KEY_INVALID', 'this is a JWK set: give one key of it');
  }
  if (PRIVATE_MEMBERS.some((m) => Object.hasOwn(o, m))) throw privateGiven('a private JWK', '.pub');
  const ok = (o.kty === 'OKP' && o.crv === 'Ed25519') || o.kty === 'RSA';
  if (!ok) {
    throw new TrustedMsError(
      'KEY_TYPE_UNSUPPORTED',
      `unsupported JWK key type ${JSON.stringify(String(o.kty)).slice(0, 32)}${
        typeof o.crv === 'string' ? ` (${o.crv.slice(0, 16)})` : ''
      }: use Ed25519 (OKP) or RSA (2048 bits or more)`,
    );
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: o as JsonWebKey, format: 'jwk' });
  } catch (cause) {
    throw new TrustedMsError('KEY_INVALID', 'not a valid JWK public key', { cause });
  }
  describeKey(key);
  return key;
}

// ---- OpenSSH public key lines (RFC 4253 §6.6, RFC 8709 §4)

const OPENSSH_LINE_RE = /^(ssh-ed25519|ssh-rsa)\s+([A-Za-z0-9+/]+={0,2})(?:\s+.*)?$/;

function parseOpenSshLine(text: string): KeyObject {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '' && !l.trim().startsWith('#'));
  if (lines.length === 0) {
    throw new TrustedMsError('KEY_INVALID', 'the input holds only comments: no OpenSSH public key line');
  }
  if (lines.length > 1) {
    throw new TrustedMsError('KEY_INVALID', `give one key at a time; the input has ${lines.length} lines`);
  }
  const line = (lines[0] as string).trim();
  const m = OPENSSH_LINE_RE.exec(line);
  if (m === null) {
    const first = line.split(/\s+/)[0] ?? '';
    if (/^(ecdsa-|sk-|ssh-dss)/.test(first)) {
      throw new TrustedMsError(
        'KEY_TYPE_UNSUPPORTED',
        `unsupported OpenSSH key type ${first.slice(0, 48)}: use ssh-ed25519 or ssh-rsa (2048 bits or more)`,
        { actions: ['make one with `ssh-keygen -t ed25519`'] },
      );
    }
    throw new TrustedMsError(
      'KEY_INVALID',
      'not a public key: expected PEM, a JWK, or an OpenSSH line "ssh-ed25519 AAAA... [comment]"',
    );
  }
  const [, type, b64] = m as unknown as [string, string, string];
  return publicKeyFromSshBlob(Buffer.from(b64, 'base64'), type);
}

/**
 * The public key in an SSH key blob (RFC 4253 §6.6: `string type, ...`), as an OpenSSH line or
 * ssh-agent carries it; `expectedType`, when given, must be the type inside. Ed25519 or RSA ≥ 2048.
 */
export function publicKeyFromSshBlob(blob: Buffer, expectedType?: string): KeyObject {
  let key: KeyObject;
  let type = expectedType ?? 'ssh';
  try {
    const r = new SshReader(blob);
    const inside = r.string().toString('latin1');
    if (expectedType !== undefined && inside !== expectedType) throw new Error('the key type inside differs');
    type = inside;
    if (type !== 'ssh-ed25519' && type !== 'ssh-rsa') {
      throw new TrustedMsError(
        'KEY_TYPE_UNSUPPORTED',
        `unsupported OpenSSH key type ${type.slice(0, 48)}: use ssh-ed25519 or ssh-rsa (2048 bits or more)`,
      );
    }
    let jwk: JsonWebKey;
    if (type === 'ssh-ed25519') {
      jwk = { kty: 'OKP', crv: 'Ed25519', x: exactly(r.string(), 32).toString('base64url') };
    } else {
      const e = r.mpint();
      const n = r.mpint();
      jwk = { kty: 'RSA', e: e.toString('base64url'), n: n.toString('base64url') };
    }
    r.end();
    key = createPublicKey({ key: jwk, format: 'jwk' });
  } catch (cause) {
    if (cause instanceof TrustedMsError) throw cause;
    throw new TrustedMsError('KEY_INVALID', `not a valid ${type} public key (truncated or damaged)`, {
      cause,
    });
  }
  describeKey(key);
  return key;
}

function exactly(b: Buffer, n: number): Buffer {
  if (b.length !== n) throw new Error(`expected ${n} bytes`);
  return b;
}

/** The SSH wire encoding's `string` and `mpint` (RFC 4251 §5). */
export class SshReader {
  #off = 0;
  constructor(private readonly buf: Buffer) {}

  string(): Buffer {
    if (this.#off + 4 > this.buf.length) throw new Error('truncated');
    const len = this.buf.readUInt32BE(this.#off);
    const start = this.#off + 4;
    if (start + len > this.buf.length) throw new Error('truncated');
    this.#off = start + len;
    return this.buf.subarray(start, start + len);
  }

  /** A positive mpint without its sign byte. */
  mpint(): Buffer {
    const b = this.string();
    if (b.length === 0 || (b[0] as number) & 0x80) throw new Error('not a positive integer');
    return b[0] === 0 ? b.subarray(1) : b;
  }

  end(): void {
    if (this.#off !== this.buf.length) throw new Error('trailing bytes');
  }
}
