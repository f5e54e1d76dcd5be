import { execFileSync } from 'node:child_process';
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign as nodeSign,
} from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TrustedMsError } from '../../../src/errors.js';
import {
  CHALLENGE_FORMAT_VERSION,
  type Challenge,
  challengeSigningBytes,
  newChallenge,
  parseChallengeSigningBytes,
  signatureFromWire,
  signatureToWire,
  signChallenge,
  verifyChallengeSignature,
} from '../../../src/protocol/challenge.js';
import { newExchangeKeyPair } from '../../../src/protocol/session-key.js';

// The golden vector of docs/protocol.md.
const GOLDEN: Challenge = {
  id: 'AAECAwQFBgcICQoLDA0ODw',
  nonce: 'EBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8',
  user: 'alice',
  audience: 'trusted-ms://lab-1234/security',
  // RFC 7748 section 6.1, Alice's X25519 public key
  clientKey: 'hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo',
  expiresAt: 1767225600,
};
const KEY = GOLDEN.clientKey;
const GOLDEN_TEXT =
  'trusted-ms login-challenge v1\n' +
  'id=AAECAwQFBgcICQoLDA0ODw\n' +
  'nonce=EBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8\n' +
  'user=alice\n' +
  'audience=trusted-ms://lab-1234/security\n' +
  'client-key=hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo\n' +
  'expires-at=1767225600\n';
const GOLDEN_HEX =
  '747275737465642d6d73206c6f67696e2d6368616c6c656e67652076310a' +
  '69643d41414543417751464267634943516f4c4441304f44770a' +
  '6e6f6e63653d45424553457851564668635947526f62484230654879416849694d6b4a53596e4b436b714b7977744c69380a' +
  '757365723d616c6963650a' +
  '61756469656e63653d747275737465642d6d733a2f2f6c61622d313233342f73656375726974790a' +
  '636c69656e742d6b65793d6853447743596b777031523069333363744437335767325f4f67306d4f427230363653706a717162546d6f0a' +
  '657870697265732d61743d313736373232353630300a';
// RFC 8032 section 7.1, test 1: a published key, so its signature over GOLDEN is a known answer.
const RFC8032_PKCS8_HEX =
  '302e020100300506032b6570042204209d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60';
const GOLDEN_ED25519_SIG =
  'oo8CFC5nbn6mJOW1DPFpDWbXaQU827dIZmo8uRCuqv00HMi4iEp4ypMTCkYZTjjwyGuoR14D3CK9gwVzMCqoAg';

const BEFORE_EXPIRY = () => GOLDEN.expiresAt * 1000 - 60_000;

const ed = generateKeyPairSync('ed25519');
const ed2 = generateKeyPairSync('ed25519');
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });

/** The error code a call throws, or undefined when it returns; other errors propagate. */
function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof TrustedMsError) return err.code;
    throw err;
  }
  return undefined;
}

function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof TrustedMsError) return err.message;
    throw err;
  }
  throw new Error('expected a TrustedMsError');
}

function flipBit(sig: Uint8Array, index = 0): Buffer {
  const copy = Buffer.from(sig);
  copy[index] = copy[index]! ^ 0x01;
  return copy;
}

describe('challengeSigningBytes', () => {
  it('encodes the golden vector to the exact documented bytes', () => {
    const bytes = challengeSigningBytes(GOLDEN);
    expect(bytes.toString('utf8')).toBe(GOLDEN_TEXT);
    expect(bytes.toString('hex')).toBe(GOLDEN_HEX);
    expect(bytes.length).toBe(234);
    expect(CHALLENGE_FORMAT_VERSION).toBe(1);
  });

  it('ignores extra properties of the object', () => {
    const withExtra = { ...GOLDEN, role: 'admin' } as Challenge;
    expect(challengeSigningBytes(withExtra).toString('hex')).toBe(GOLDEN_HEX);
  });

  const invalidFields: [keyof Challenge, unknown][] = [
    ['id', 'AAECAwQFBgcICQo'], // 15 characters
    ['id', 'A'.repeat(129)],
    ['id', 'AAECAwQFBgcICQoLDA0ODw='],
    ['id', 'AAECAwQFBgcICQoLDA0O+w'],
    ['id', 'AAECAwQFBgcICQoLDA0O/w'],
    ['id', 'AAECAwQFBgcICQoLDA0ODw\nuser=bob'],
    ['id', 1234567890123456],
    ['nonce', 'AAECAwQFBgcICQoLDA0ODw'.slice(0, 21)], // 21 characters: 15 bytes
    ['nonce', 'AAECAwQFBgcICQoL'], // 16 characters: 12 bytes
    ['nonce', 'AAECAwQFBgcICQoLDA0ODx'], // 16 bytes but stray low bits: not canonical
    ['nonce', 'AAECAwQFBgcICQoLDA0ODwAAA'], // length 1 mod 4
    ['nonce', 'AAECAwQFBgcICQoLDA0ODw=='],
    ['nonce', `${GOLDEN.nonce}\nuser=bob`],
    ['nonce', undefined],
    ['user', 'alice\nuser=bob'],
    ['user', 'alice\n'],
    ['user', 'alice\r'],
    ['user', 'alice=bob'],
    ['user', 'Alice'],
    ['user', '1alice'],
    ['user', ''],
    ['user', 'a'.repeat(33)],
    ['user', 'alicé'],
    ['user', 'al ice'],
    ['user', null],
    ['audience', 'trusted-ms://lab-1234/security\nexpires-at=9999999999'],
    ['audience', 'trusted-ms://lab=1234'],
    ['audience', 'Trusted-ms://lab-1234'],
    ['audience', '-trusted-ms'],
    ['audience', 'trusted ms'],
    ['audience', ''],
    ['audience', `a${'b'.repeat(128)}`],
    ['clientKey', KEY.slice(0, 42)], // 42 characters
    ['clientKey', `${KEY}A`], // 44 characters
    ['clientKey', `${KEY}=`],
    ['clientKey', `${KEY.slice(0, -1)}p`], // stray low bits: not canonical
    ['clientKey', KEY.replace('_', '/')],
    ['clientKey', `${KEY.slice(0, 40)}\nex`],
    ['clientKey', Buffer.from(KEY, 'base64url').toString('hex')],
    ['clientKey', undefined],
    ['expiresAt', 1767225600.5],
    ['expiresAt', 0],
    ['expiresAt', -1],
    ['expiresAt', Number.NaN],
    ['expiresAt', Number.POSITIVE_INFINITY],
    ['expiresAt', 2 ** 53],
    ['expiresAt', '1767225600'],
  ];

  it.each(invalidFields)('refuses an invalid %s (%j) with INVALID_INPUT naming the field', (field, value) => {
    const bad = { ...GOLDEN, [field]: value } as Challenge;
    expect(codeOf(() => challengeSigningBytes(bad))).toBe('INVALID_INPUT');
    expect(messageOf(() => challengeSigningBytes(bad))).toContain(`field ${field} `);
  });

  it('accepts the edges of each grammar', () => {
    const edges: Challenge[] = [
      { ...GOLDEN, id: 'A'.repeat(16) },
      { ...GOLDEN, id: '_'.repeat(128) },
      { ...GOLDEN, nonce: 'AAAAAAAAAAAAAAAAAAAAAA' }, // 22 characters: exactly 16 bytes
      { ...GOLDEN, user: 'a' },
      { ...GOLDEN, user: `a${'0._-'.repeat(7)}abc` }, // 32 characters
      { ...GOLDEN, audience: `0${'a.:/_-'.repeat(21)}z` }, // 128 characters
      { ...GOLDEN, clientKey: Buffer.alloc(32, 0xff).toString('base64url') },
      { ...GOLDEN, clientKey: newExchangeKeyPair().publicKeyRaw },
      { ...GOLDEN, expiresAt: 1 },
      { ...GOLDEN, expiresAt: Number.MAX_SAFE_INTEGER },
    ];
    for (const c of edges) expect(parseChallengeSigningBytes(challengeSigningBytes(c))).toEqual(c);
  });

  it('does not echo a huge value in the message', () => {
    const message = messageOf(() => challengeSigningBytes({ ...GOLDEN, user: 'x'.repeat(1_000_000) }));
    expect(message.length).toBeLessThan(200);
    expect(message).not.toMatch(/x{33}/);
  });

  it('refuses something that is not an object', () => {
    expect(codeOf(() => challengeSigningBytes(null as unknown as Challenge))).toBe('INVALID_INPUT');
    expect(codeOf(() => challengeSigningBytes('id=x' as unknown as Challenge))).toBe('INVALID_INPUT');
  });
});

describe('parseChallengeSigningBytes', () => {
  it('is the inverse of challengeSigningBytes', () => {
    expect(parseChallengeSigningBytes(Buffer.from(GOLDEN_HEX, 'hex'))).toEqual(GOLDEN);
    const fresh = newChallenge('bob.smith', 'trusted-ms://lab-1/security', KEY, 300);
    expect(parseChallengeSigningBytes(challengeSigningBytes(fresh))).toEqual(fresh);
    expect(parseChallengeSigningBytes(new Uint8Array(challengeSigningBytes(fresh)))).toEqual(fresh);
  });

  const lines = GOLDEN_TEXT.slice(0, -1).split('\n');
  const join_ = (ls: string[]) => `${ls.join('\n')}\n`;
  const invalidTexts: [string, string][] = [
    ['wrong version tag', GOLDEN_TEXT.replace(' v1\n', ' v2\n')],
    ['version tag v01', GOLDEN_TEXT.replace(' v1\n', ' v01\n')],
    ['another tag', GOLDEN_TEXT.replace('login-challenge', 'request-proof')],
    ['missing tag', join_(lines.slice(1))],
    ['tag with trailing space', GOLDEN_TEXT.replace(' v1\n', ' v1 \n')],
    ['unknown line', join_([...lines.slice(0, 4), 'role=admin', ...lines.slice(4)])],
    ['unknown trailing line', join_([...lines, 'role=admin'])],
    ['missing line', join_(lines.filter((l) => !l.startsWith('user=')))],
    ['duplicate line', join_([...lines.slice(0, 4), lines[3]!, ...lines.slice(4)])],
    ['duplicate replacing another', join_([...lines.slice(0, 4), lines[3]!, lines[5]!, lines[6]!])],
    ['reordered lines', join_([lines[0]!, lines[1]!, lines[2]!, lines[4]!, lines[3]!, lines[5]!, lines[6]!])],
    ['client key after expiry', join_([...lines.slice(0, 5), lines[6]!, lines[5]!])],
    ['missing client key', join_(lines.filter((l) => !l.startsWith('client-key=')))],
    ['client key camel-case', GOLDEN_TEXT.replace('client-key=', 'clientKey=')],
    ['short client key', GOLDEN_TEXT.replace(`=${KEY}`, `=${KEY.slice(0, 42)}`)],
    ['padded client key', GOLDEN_TEXT.replace(`=${KEY}`, `=${KEY}=`)],
    ['trailing bytes', `${GOLDEN_TEXT}x`],
    ['trailing newline', `${GOLDEN_TEXT}\n`],
    ['leading newline', `\n${GOLDEN_TEXT}`],
    ['leading byte order mark', `\ufeff${GOLDEN_TEXT}`],
    ['no final newline', GOLDEN_TEXT.slice(0, -1)],
    ['CRLF line endings', GOLDEN_TEXT.replaceAll('\n', '\r\n')],
    ['space before =', GOLDEN_TEXT.replace('user=alice', 'user =alice')],
    ['space after =', GOLDEN_TEXT.replace('user=alice', 'user= alice')],
    ['upper-case key', GOLDEN_TEXT.replace('user=alice', 'USER=alice')],
    ['= in a value', GOLDEN_TEXT.replace('user=alice', 'user=alice=bob')],
    ['invalid value', GOLDEN_TEXT.replace('user=alice', 'user=Alice')],
    ['empty value', GOLDEN_TEXT.replace('user=alice', 'user=')],
    ['short nonce', GOLDEN_TEXT.replace(GOLDEN.nonce, 'EBESExQVFhcYGRobHB0e')],
    ['expiry with a leading zero', GOLDEN_TEXT.replace('=1767225600', '=01767225600')],
    ['expiry with a fraction', GOLDEN_TEXT.replace('=1767225600', '=1767225600.0')],
    ['expiry with an exponent', GOLDEN_TEXT.replace('=1767225600', '=1e9')],
    ['expiry with a sign', GOLDEN_TEXT.replace('=1767225600', '=+1767225600')],
    ['expiry zero', GOLDEN_TEXT.replace('=1767225600', '=0')],
    ['expiry beyond safe integers', GOLDEN_TEXT.replace('=1767225600', '=9007199254740992')],
    ['expiry with 17 digits', GOLDEN_TEXT.replace('=1767225600', '=10000000000000000')],
    ['expiry camel-case key', GOLDEN_TEXT.replace('expires-at=', 'expiresAt=')],
    ['NUL byte', GOLDEN_TEXT.replace('alice', 'ali\0ce')],
    ['non-ASCII', GOLDEN_TEXT.replace('alice', 'alicé')],
    ['empty', ''],
    ['only the tag', 'trusted-ms login-challenge v1\n'],
    ['too long', GOLDEN_TEXT + 'x'.repeat(2000)],
  ];

  it.each(invalidTexts)('refuses %s with INVALID_INPUT', (_name, text) => {
    expect(codeOf(() => parseChallengeSigningBytes(Buffer.from(text, 'utf8')))).toBe('INVALID_INPUT');
  });

  it('refuses invalid UTF-8 and non-byte input', () => {
    const bad = Buffer.concat([Buffer.from(GOLDEN_TEXT.slice(0, -1)), Buffer.from([0xff, 0x0a])]);
    expect(codeOf(() => parseChallengeSigningBytes(bad))).toBe('INVALID_INPUT');
    expect(codeOf(() => parseChallengeSigningBytes(GOLDEN_TEXT as unknown as Uint8Array))).toBe(
      'INVALID_INPUT',
    );
  });

  it('names the unsupported version', () => {
    const message = messageOf(() => parseChallengeSigningBytes(Buffer.from(GOLDEN_TEXT.replace('v1', 'v2'))));
    expect(message).toMatch(/unsupported challenge format version/);
  });
});

describe('newChallenge', () => {
  it('makes a random 16-byte id and 32-byte nonce and an expiry from the clock', () => {
    const now = () => 1_767_225_000_999;
    const a = newChallenge('alice', 'trusted-ms://lab-1234/security', KEY, 120, now);
    const b = newChallenge('alice', 'trusted-ms://lab-1234/security', KEY, 120, now);
    expect(Buffer.from(a.id, 'base64url')).toHaveLength(16);
    expect(Buffer.from(a.nonce, 'base64url')).toHaveLength(32);
    expect(a.id).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(a.nonce).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(a.expiresAt).toBe(1_767_225_000 + 120);
    expect(a.user).toBe('alice');
    expect(a.audience).toBe('trusted-ms://lab-1234/security');
    expect(a.clientKey).toBe(KEY);
    expect(b.id).not.toBe(a.id);
    expect(b.nonce).not.toBe(a.nonce);
  });

  it('refuses a bad ttl, user, audience or client key', () => {
    for (const ttl of [0, -5, 1.5, Number.NaN]) {
      expect(codeOf(() => newChallenge('alice', 'trusted-ms://x', KEY, ttl))).toBe('INVALID_INPUT');
    }
    expect(codeOf(() => newChallenge('Alice', 'trusted-ms://x', KEY, 60))).toBe('INVALID_INPUT');
    expect(codeOf(() => newChallenge('alice', 'trusted-ms://x\n', KEY, 60))).toBe('INVALID_INPUT');
    expect(codeOf(() => newChallenge('alice', 'trusted-ms://x', `${KEY}=`, 60))).toBe('INVALID_INPUT');
    expect(messageOf(() => newChallenge('alice', 'trusted-ms://x', '', 60))).toContain('field clientKey ');
  });
});

describe('signChallenge and verifyChallengeSignature', () => {
  const keys: [string, { privateKey: KeyObject; publicKey: KeyObject }][] = [
    ['Ed25519', ed],
    ['RSA-2048 PSS', rsa],
  ];

  describe.each(keys)('%s', (_name, kp) => {
    const sig = signChallenge(kp.privateKey, GOLDEN);
    const opts = { now: BEFORE_EXPIRY };

    it('verifies its own signature, with and without the expected audience and user', () => {
      expect(codeOf(() => verifyChallengeSignature(kp.publicKey, GOLDEN, sig, opts))).toBeUndefined();
      const expecting = { ...opts, expectedAudience: GOLDEN.audience, expectedUser: 'alice' };
      expect(codeOf(() => verifyChallengeSignature(kp.publicKey, GOLDEN, sig, expecting))).toBeUndefined();
    });

    it('refuses a tampered, truncated or empty signature with a generic SIGNATURE_INVALID', () => {
      for (const bad of [flipBit(sig), flipBit(sig, sig.length - 1), sig.subarray(1), Buffer.alloc(0)]) {
        expect(codeOf(() => verifyChallengeSignature(kp.publicKey, GOLDEN, bad, opts))).toBe(
          'SIGNATURE_INVALID',
        );
      }
      expect(messageOf(() => verifyChallengeSignature(kp.publicKey, GOLDEN, flipBit(sig), opts))).toBe(
        'signature verification failed',
      );
    });

    it('refuses the signature for a challenge with any field changed after signing', () => {
      const changed: Challenge[] = [
        { ...GOLDEN, id: 'BAECAwQFBgcICQoLDA0ODw' },
        { ...GOLDEN, nonce: 'FBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8' },
        { ...GOLDEN, user: 'bob' },
        { ...GOLDEN, audience: 'trusted-ms://lab-9999/security' },
        { ...GOLDEN, clientKey: newExchangeKeyPair().publicKeyRaw },
        { ...GOLDEN, expiresAt: GOLDEN.expiresAt + 1 },
      ];
      for (const c of changed) {
        expect(codeOf(() => verifyChallengeSignature(kp.publicKey, c, sig, opts))).toBe('SIGNATURE_INVALID');
      }
    });

    it('refuses an expired challenge (frozen clock), the boundary included', () => {
      const at = (ms: number) => ({ now: () => ms });
      const exp = GOLDEN.expiresAt * 1000;
      expect(codeOf(() => verifyChallengeSignature(kp.publicKey, GOLDEN, sig, at(exp - 1)))).toBeUndefined();
      expect(codeOf(() => verifyChallengeSignature(kp.publicKey, GOLDEN, sig, at(exp)))).toBe(
        'CHALLENGE_EXPIRED',
      );
      expect(codeOf(() => verifyChallengeSignature(kp.publicKey, GOLDEN, sig, at(exp + 86_400_000)))).toBe(
        'CHALLENGE_EXPIRED',
      );
    });

    it('refuses another audience or user with AUDIENCE_MISMATCH', () => {
      const otherAudience = { ...opts, expectedAudience: 'trusted-ms://lab-9999/security' };
      expect(codeOf(() => verifyChallengeSignature(kp.publicKey, GOLDEN, sig, otherAudience))).toBe(
        'AUDIENCE_MISMATCH',
      );
      const otherUser = { ...opts, expectedUser: 'bob' };
      expect(codeOf(() => verifyChallengeSignature(kp.publicKey, GOLDEN, sig, otherUser))).toBe(
        'AUDIENCE_MISMATCH',
      );
    });

    it('judges the signature before expiry and audience', () => {
      const everythingWrong = {
        now: () => GOLDEN.expiresAt * 1000 + 1,
        expectedAudience: 'x',
        expectedUser: 'y',
      };
      expect(
        codeOf(() => verifyChallengeSignature(kp.publicKey, GOLDEN, flipBit(sig), everythingWrong)),
      ).toBe('SIGNATURE_INVALID');
    });

    it('refuses an invalid challenge with INVALID_INPUT, before anything else', () => {
      const bad = { ...GOLDEN, user: 'alice\nuser=bob' };
      expect(codeOf(() => signChallenge(kp.privateKey, bad))).toBe('INVALID_INPUT');
      expect(codeOf(() => verifyChallengeSignature(kp.publicKey, bad, sig, opts))).toBe('INVALID_INPUT');
    });
  });

  it('gives the documented known-answer Ed25519 signature', () => {
    const key = createPrivateKey({
      key: Buffer.from(RFC8032_PKCS8_HEX, 'hex'),
      format: 'der',
      type: 'pkcs8',
    });
    const sig = signChallenge(key, GOLDEN);
    expect(signatureToWire(sig)).toBe(GOLDEN_ED25519_SIG);
    expect(
      codeOf(() => verifyChallengeSignature(createPublicKey(key), GOLDEN, sig, { now: BEFORE_EXPIRY })),
    ).toBeUndefined();
  });

  it('randomises RSA-PSS signatures, and both verify', () => {
    const a = signChallenge(rsa.privateKey, GOLDEN);
    const b = signChallenge(rsa.privateKey, GOLDEN);
    expect(a).toHaveLength(256);
    expect(a.equals(b)).toBe(false);
    expect(
      codeOf(() => verifyChallengeSignature(rsa.publicKey, GOLDEN, b, { now: BEFORE_EXPIRY })),
    ).toBeUndefined();
  });

  it("refuses a signature made with another user's key", () => {
    const sig = signChallenge(ed2.privateKey, GOLDEN);
    expect(codeOf(() => verifyChallengeSignature(ed.publicKey, GOLDEN, sig, { now: BEFORE_EXPIRY }))).toBe(
      'SIGNATURE_INVALID',
    );
    const rsaSig = signChallenge(rsa.privateKey, GOLDEN);
    expect(codeOf(() => verifyChallengeSignature(ed.publicKey, GOLDEN, rsaSig, { now: BEFORE_EXPIRY }))).toBe(
      'SIGNATURE_INVALID',
    );
  });

  it('refuses a signature over the raw nonce or in another format', () => {
    const rawNonce = nodeSign(null, Buffer.from(GOLDEN.nonce, 'base64url'), ed.privateKey);
    const json = nodeSign(null, Buffer.from(JSON.stringify(GOLDEN)), ed.privateKey);
    for (const sig of [rawNonce, json]) {
      expect(codeOf(() => verifyChallengeSignature(ed.publicKey, GOLDEN, sig, { now: BEFORE_EXPIRY }))).toBe(
        'SIGNATURE_INVALID',
      );
    }
  });

  it('refuses a key whose algorithm is not in the allow-list with ALGORITHM_NOT_ALLOWED', () => {
    const sig = signChallenge(ed.privateKey, GOLDEN);
    for (const allowed of [['PS256'] as const, [] as const]) {
      expect(
        codeOf(() => verifyChallengeSignature(ed.publicKey, GOLDEN, sig, { now: BEFORE_EXPIRY, allowed })),
      ).toBe('ALGORITHM_NOT_ALLOWED');
    }
    const rsaSig = signChallenge(rsa.privateKey, GOLDEN);
    expect(
      codeOf(() =>
        verifyChallengeSignature(rsa.publicKey, GOLDEN, rsaSig, { now: BEFORE_EXPIRY, allowed: ['EdDSA'] }),
      ),
    ).toBe('ALGORITHM_NOT_ALLOWED');
  });

  it('refuses unsupported keys: small RSA, EC, and a public key for signing', () => {
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    expect(codeOf(() => signChallenge(small.privateKey, GOLDEN))).toBe('KEY_TYPE_UNSUPPORTED');
    expect(codeOf(() => signChallenge(ec.privateKey, GOLDEN))).toBe('KEY_TYPE_UNSUPPORTED');
    const sig = signChallenge(ed.privateKey, GOLDEN);
    expect(codeOf(() => verifyChallengeSignature(ec.publicKey, GOLDEN, sig, { now: BEFORE_EXPIRY }))).toBe(
      'KEY_TYPE_UNSUPPORTED',
    );
    expect(codeOf(() => signChallenge(ed.publicKey, GOLDEN))).toBe('KEY_INVALID');
  });
});

describe('signature wire form', () => {
  it('round-trips unpadded base64url', () => {
    const sig = signChallenge(rsa.privateKey, GOLDEN);
    const wire = signatureToWire(sig);
    expect(wire).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(signatureFromWire(wire).equals(sig)).toBe(true);
  });

  it.each([
    ['padded', `${GOLDEN_ED25519_SIG}==`],
    ['standard alphabet', 'ab+/cd'],
    ['whitespace', `${GOLDEN_ED25519_SIG.slice(0, 10)} ${GOLDEN_ED25519_SIG.slice(10)}`],
    ['non-canonical last character', `${GOLDEN_ED25519_SIG.slice(0, -1)}R`],
    ['length 1 mod 4', 'abcde'],
    ['empty', ''],
    ['too long', 'A'.repeat(4096)],
  ])('refuses a %s signature with INVALID_INPUT', (_name, text) => {
    expect(codeOf(() => signatureFromWire(text))).toBe('INVALID_INPUT');
  });
});

describe('interop with the openssl recipes of docs/protocol.md', () => {
  const doc = readFileSync(new URL('../../../docs/protocol.md', import.meta.url), 'utf8');
  const dirs: string[] = [];

  /** The shell code under `<!-- recipe: name -->` in the doc, verbatim. */
  function recipe(name: string): string {
    const m = new RegExp(`<!-- recipe: ${name} -->\\n\`\`\`sh\\n([\\s\\S]*?)\\n\`\`\`\\n`).exec(doc);
    if (!m) throw new Error(`docs/protocol.md has no recipe ${name}`);
    return m[1]!;
  }

  function challengeEnv(c: Challenge): Record<string, string> {
    return {
      CH_ID: c.id,
      CH_NONCE: c.nonce,
      CH_USER: c.user,
      CH_AUDIENCE: c.audience,
      CH_CLIENT_KEY: c.clientKey,
      CH_EXPIRES_AT: String(c.expiresAt),
    };
  }

  /** Runs a recipe with POSIX sh in `dir`; returns stdout, throws on a non-zero exit. */
  function run(name: string, dir: string, env: Record<string, string> = {}): string {
    return execFileSync('/bin/sh', ['-eu', '-c', recipe(name)], {
      cwd: dir,
      env: { ...process.env, ...env },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  }

  function tempDir(): string {
    const dir = mkdtempSync(join(tmpdir(), 'trusted-ms-challenge-'));
    dirs.push(dir);
    return dir;
  }

  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('the doc shows the golden vector and its known-answer signature', () => {
    expect(doc).toContain(GOLDEN_ED25519_SIG);
    for (const [key, value] of Object.entries(challengeEnv(GOLDEN)))
      expect(doc).toContain(`${key}='${value}'`);
    const dump = GOLDEN_HEX.match(/.{1,4}/g)!.join(' ');
    const docDump = [...doc.matchAll(/^[0-9a-f]{8}: ((?:[0-9a-f]{2,4} ?)+)/gm)].map((m) => m[1]!.trim());
    expect(docDump.join(' ')).toBe(dump);
  });

  it('printf builds the exact golden bytes', () => {
    const dir = tempDir();
    run('bytes', dir, challengeEnv(GOLDEN));
    expect(readFileSync(join(dir, 'challenge.txt')).toString('hex')).toBe(GOLDEN_HEX);
  });

  it('openssl gives the known-answer Ed25519 signature', () => {
    const dir = tempDir();
    const key = createPrivateKey({
      key: Buffer.from(RFC8032_PKCS8_HEX, 'hex'),
      format: 'der',
      type: 'pkcs8',
    });
    writeFileSync(join(dir, 'user.key'), key.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
    run('bytes', dir, challengeEnv(GOLDEN));
    expect(run('sign-ed25519', dir).trim()).toBe(GOLDEN_ED25519_SIG);
  });

  const algorithms = [
    {
      name: 'Ed25519',
      keys: 'keys-ed25519',
      sign: 'sign-ed25519',
      verify: 'verify-ed25519',
      ok: /Verified Successfully/,
    },
    { name: 'RSA-PSS', keys: 'keys-rsa', sign: 'sign-rsa', verify: 'verify-rsa', ok: /Verified OK/ },
  ];

  describe.each(algorithms)('$name', (alg) => {
    function setUp(): { dir: string; privateKey: KeyObject; publicKey: KeyObject; c: Challenge } {
      const dir = tempDir();
      run(alg.keys, dir);
      expect(statSync(join(dir, 'user.key')).mode & 0o777).toBe(0o600);
      const privateKey = createPrivateKey(readFileSync(join(dir, 'user.key')));
      const publicKey = createPublicKey(readFileSync(join(dir, 'user.pub')));
      const c = newChallenge(
        'alice',
        'trusted-ms://lab-1234/security',
        newExchangeKeyPair().publicKeyRaw,
        300,
      );
      run('bytes', dir, challengeEnv(c));
      return { dir, privateKey, publicKey, c };
    }

    it('a signature made by openssl verifies with verifyChallengeSignature', () => {
      const { dir, publicKey, c } = setUp();
      const wire = run(alg.sign, dir).trim();
      expect(wire).toMatch(/^[A-Za-z0-9_-]+$/);
      const sig = signatureFromWire(wire);
      expect(
        codeOf(() => verifyChallengeSignature(publicKey, c, sig, { expectedUser: 'alice' })),
      ).toBeUndefined();
      const other = { ...c, nonce: newChallenge('alice', 'x', KEY, 1).nonce };
      expect(codeOf(() => verifyChallengeSignature(publicKey, other, sig))).toBe('SIGNATURE_INVALID');
    });

    it('a signature made by signChallenge verifies with openssl', () => {
      const { dir, privateKey, c } = setUp();
      const wire = signatureToWire(signChallenge(privateKey, c));
      run('decode-signature', dir, { SIG: wire });
      expect(run(alg.verify, dir)).toMatch(alg.ok);
      // One changed byte in the signed bytes and openssl refuses it too.
      run('bytes', dir, challengeEnv({ ...c, user: 'bob' }));
      expect(() => run(alg.verify, dir)).toThrow();
    });
  });
});
