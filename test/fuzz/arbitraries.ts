import { createHmac, generateKeyPairSync, sign } from 'node:crypto';
import fc from 'fast-check';

/**
 * fast-check arbitraries for hostile input: values of the wrong type, huge and empty strings,
 * unicode, malformed JSON text, and mutations of real credentials (tickets, signatures, proofs).
 */

/** Strings that break naive code: empty, control and astral characters, huge, path and format tricks. */
export const nastyString = fc.oneof(
  fc.constantFrom(
    '',
    ' ',
    '\u0000',
    '..',
    '../../etc/passwd',
    '%00',
    '%',
    '%zz',
    '__proto__',
    'constructor',
    'toString',
    '\u202e\u0041',
    '\ud800',
    '😀'.repeat(50),
    'null',
    'a'.repeat(5000),
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a template-injection probe, literally
    '${7*7}',
    "' OR 1=1 --",
  ),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ minLength: 1000, maxLength: 70_000 }).map((s) => s.slice(0, 70_000)),
);

/** A JSON value of any type, including deep and wide ones. */
export const anyJson: fc.Arbitrary<unknown> = fc.oneof(
  { depthSize: 'small' },
  fc.jsonValue({ maxDepth: 4 }),
  nastyString,
  fc.constantFrom(null, true, false, 0, -1, 1e308, -0, 2 ** 53 + 1, [], {}),
  fc.array(fc.constant({}), { maxLength: 2000 }),
);

/** An object with the expected keys but values of any type, plus maybe extra keys. */
export function objectLike(keys: string[], value: fc.Arbitrary<unknown> = anyJson): fc.Arbitrary<unknown> {
  return fc
    .record(
      {
        base: fc.record(Object.fromEntries(keys.map((k) => [k, value])), { requiredKeys: [] }),
        extra: fc.dictionary(nastyString, anyJson, { maxKeys: 3 }),
        proto: fc.boolean(),
      },
      { requiredKeys: ['base', 'extra', 'proto'] },
    )
    .map(({ base, extra, proto }) => {
      const o: Record<string, unknown> = { ...extra, ...base };
      // A literal `__proto__` key as JSON.parse produces it (prototype-pollution shape).
      const rest = JSON.stringify(o).slice(1);
      return proto ? JSON.parse(`{"__proto__":{"polluted":true}${rest === '}' ? '' : ','}${rest}`) : o;
    });
}

/** Body text: valid JSON of the wrong shape, truncated JSON, non-JSON bytes, empty. */
export function bodyText(shape: fc.Arbitrary<unknown>): fc.Arbitrary<string> {
  return fc.oneof(
    shape.map((v) => JSON.stringify(v) ?? 'null'),
    shape.map((v) => (JSON.stringify(v) ?? 'null').slice(0, -1)),
    anyJson.map((v) => JSON.stringify(v) ?? ''),
    fc.constantFrom(
      '',
      '{',
      '}',
      '[',
      '{"a":',
      'nul',
      '\u0000',
      '{"a":1}{"b":2}',
      '{"a":"\\ud800"}',
      '\ufeff{}',
    ),
    fc.constant(`${'['.repeat(10_000)}${']'.repeat(10_000)}`),
    fc.string({ unit: 'binary', maxLength: 200 }),
  );
}

export const contentType = fc.constantFrom(
  'application/json',
  'application/json; charset=utf-8',
  'application/json; charset=latin1',
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  '',
  'application/json\u0000',
  '*/*',
  undefined,
);

const b64url = (x: string | Buffer) => Buffer.from(x).toString('base64url');

/** Ways to spoil a compact JWS (a ticket): each keeps it plausible enough to reach the verifier. */
export function ticketMutation(ticket: string, publicKeyPem: string): fc.Arbitrary<string> {
  const [h, p, s] = ticket.split('.') as [string, string, string];
  const header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as Record<string, unknown>;
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as Record<string, unknown>;
  const withHeader = (hh: Record<string, unknown>, sig = s) => `${b64url(JSON.stringify(hh))}.${p}.${sig}`;
  const withClaims = (cc: Record<string, unknown>) => `${h}.${b64url(JSON.stringify(cc))}.${s}`;
  // HS256 "key confusion": an HMAC keyed with the issuer's *public* key, which anyone can fetch.
  const hs256 = (cc: Record<string, unknown>) => {
    const hh = b64url(JSON.stringify({ ...header, alg: 'HS256' }));
    const pp = b64url(JSON.stringify(cc));
    return `${hh}.${pp}.${createHmac('sha256', publicKeyPem).update(`${hh}.${pp}`).digest('base64url')}`;
  };
  // A well-formed EdDSA ticket signed by someone else's key.
  const selfSigned = (() => {
    const key = generateKeyPairSync('ed25519').privateKey;
    return (cc: Record<string, unknown>) => {
      const pp = b64url(JSON.stringify(cc));
      return `${h}.${pp}.${sign(null, Buffer.from(`${h}.${pp}`), key).toString('base64url')}`;
    };
  })();
  return fc.oneof(
    fc.integer({ min: 0, max: ticket.length - 1 }).map((i) => ticket.slice(0, i)),
    fc
      .tuple(
        fc.integer({ min: 0, max: ticket.length - 1 }),
        fc.constantFrom('A', 'B', '_', '-', '.', '=', '+', '/'),
      )
      .map(([i, c]) => `${ticket.slice(0, i)}${c}${ticket.slice(i + 1)}`),
    fc.constant(withHeader({ ...header, alg: 'none' }, '')),
    fc.constant(`${b64url(JSON.stringify({ ...header, alg: 'none' }))}.${p}.`),
    fc
      .constantFrom('none', 'None', 'NONE', 'HS256', 'RS256', 'ES256', 'EdDSA ', 'eddsa', '')
      .map((alg) => withHeader({ ...header, alg })),
    fc.constant(hs256({ ...claims, role: 'admin', perms: { '*': ['read', 'query', 'write'] } })),
    fc.constant(hs256(claims)),
    fc.constant(selfSigned({ ...claims, role: 'admin' })),
    objectLike(['alg', 'typ', 'kid', 'jku', 'jwk', 'x5u', 'crit']).map((hh) =>
      withHeader(hh as Record<string, unknown>),
    ),
    objectLike(['v', 'iss', 'aud', 'sub', 'role', 'perms', 'iat', 'exp', 'jti', 'posture', 'cnf']).map((cc) =>
      withClaims(cc as Record<string, unknown>),
    ),
    fc.constant(withClaims({ ...claims, perms: { '*': ['read', 'query', 'write'] } })),
    fc.constant(withClaims({ ...claims, exp: 9_999_999_999 })),
    fc.constant(`${ticket}.${s}`),
    fc.constant(`${ticket} ${ticket}`),
    fc.constant(ticket.repeat(3)),
    nastyString,
  );
}

/** The `tms-proof` header spoiled: wrong version, time, nonce or MAC, or not a proof at all. */
export function proofMutation(proof: string): fc.Arbitrary<string> {
  const [v, t, n, m] = proof.split('.') as [string, string, string, string];
  return fc.oneof(
    fc.integer({ min: 0, max: proof.length - 1 }).map((i) => proof.slice(0, i)),
    fc
      .tuple(fc.integer({ min: 0, max: proof.length - 1 }), fc.constantFrom('A', 'z', '0', '_', '.'))
      .map(([i, c]) => `${proof.slice(0, i)}${c}${proof.slice(i + 1)}`),
    fc.constantFrom('v0', 'v2', 'V1', '').map((vv) => `${vv}.${t}.${n}.${m}`),
    fc
      .constantFrom('0', '-1', '1', '99999999999999999', '1e3', Number(t) - 600_000, Number(t) + 600_000)
      .map((tt) => `${v}.${tt}.${n}.${m}`),
    fc.constant(`${v}.${t}.${n}`),
    fc.constant(`${proof}, ${proof}`),
    nastyString,
  );
}
