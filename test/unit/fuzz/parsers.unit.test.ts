import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPrivateKeyFile, parsePublicKeyPem } from '../../../src/crypto/keys.js';
import { parseAttestationEntries } from '../../../src/defences/attestation-table.js';
import { isTrustedMsError } from '../../../src/errors.js';
import { parseTopology } from '../../../src/kernel/topology.js';
import { parseRoles } from '../../../src/policy/roles.js';
import {
  parseChallengeSigningBytes,
  signatureFromWire,
  validateChallenge,
} from '../../../src/protocol/challenge.js';
import { decodeTicketUnverified } from '../../../src/protocol/ticket.js';
import { AuditLog } from '../../../src/store/audit/audit-log.js';
import { validateAuditData, validateStoreData } from '../../../src/store/schema.js';
import { parseHtpasswd } from '../../../src/users/htpasswd.js';
import { anyJson, nastyString, objectLike } from '../../fuzz/arbitraries.js';

/**
 * The parsers of what the CLI reads from files and the wire, fuzzed at the function level: on any
 * input they return or throw a TrustedMsError with a code, never another exception (which the CLI
 * would print as INTERNAL, i.e. a bug).
 */

// FUZZ_PARSER_RUNS raises it for a long run (npm run fuzz does).
const RUNS = Number(process.env.FUZZ_PARSER_RUNS ?? 400);

function onlyTrustedMsErrors(fn: () => unknown): boolean {
  try {
    fn();
    return true;
  } catch (err) {
    if (isTrustedMsError(err)) return true;
    throw err;
  }
}

const pem = (label: string) =>
  fc
    .tuple(fc.base64String({ maxLength: 400 }), fc.constantFrom('\n', '\r\n', ''))
    .map(([body, nl]) => `-----BEGIN ${label}-----${nl}${body}${nl}-----END ${label}-----${nl}`);
const realRsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
const realEd = generateKeyPairSync('ed25519');
const realPems = [
  realEd.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  realRsa.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  realRsa.publicKey.export({ type: 'pkcs1', format: 'pem' }).toString(),
  realEd.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  realRsa.privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(),
];
/** Real keys with one character changed, cut, or doubled; and PEM-shaped junk. */
const pemText = fc.oneof(
  fc.constantFrom(...realPems),
  fc
    .tuple(fc.constantFrom(...realPems), fc.nat(), fc.constantFrom('A', '-', '\n', '=', ' ', '\u0000'))
    .map(([p, i, c]) => `${p.slice(0, i % p.length)}${c}${p.slice((i % p.length) + 1)}`),
  fc.tuple(fc.constantFrom(...realPems), fc.nat()).map(([p, i]) => p.slice(0, i % p.length)),
  pem('PUBLIC KEY'),
  pem('RSA PUBLIC KEY'),
  pem('PRIVATE KEY'),
  pem('ENCRYPTED PRIVATE KEY'),
  pem('OPENSSH PRIVATE KEY'),
  pem('CERTIFICATE'),
  nastyString,
);

describe('CLI input parsers under fuzzing: TrustedMsError or a result, nothing else', () => {
  it('htpasswd', () => {
    const line = fc.oneof(
      nastyString,
      fc.tuple(fc.stringMatching(/^[a-z][a-z0-9_.-]{0,20}$/), nastyString).map(([u, h]) => `${u}:${h}`),
      fc
        .tuple(
          fc.stringMatching(/^[a-z]{1,8}$/),
          fc.constantFrom('$2y$', '$2b$10$', '$apr1$', '{SHA}', '$5$', '$2y$05$'),
          nastyString,
        )
        .map(([u, p, h]) => `${u}:${p}${h}`),
    );
    fc.assert(
      fc.property(fc.array(line, { maxLength: 20 }), fc.constantFrom('\n', '\r\n'), (lines, nl) =>
        onlyTrustedMsErrors(() => parseHtpasswd(lines.join(nl))),
      ),
      { numRuns: RUNS },
    );
  });

  it('topology', () => {
    const service = objectLike(['name', 'description', 'databases', 'calls']);
    const plausible = fc.record({
      name: fc.constantFrom('a', 'b', 'c', 'constructor', '__proto__'),
      description: anyJson,
      databases: fc.oneof(
        anyJson,
        fc.dictionary(fc.constantFrom('x', 'y', '__proto__'), fc.array(anyJson, { maxLength: 3 })),
      ),
      calls: fc.oneof(anyJson, fc.array(fc.oneof(fc.constantFrom('a', 'b', 'c'), anyJson), { maxLength: 3 })),
    });
    fc.assert(
      fc.property(
        fc.oneof(
          anyJson,
          objectLike(['version', 'services']),
          fc.record({
            version: fc.constant(1),
            services: fc.array(fc.oneof(service, plausible, anyJson), { maxLength: 5 }),
          }),
        ),
        (doc) => onlyTrustedMsErrors(() => parseTopology(doc)),
      ),
      { numRuns: RUNS },
    );
  });

  it('roles (policy files)', () => {
    const grant = fc.oneof(
      anyJson,
      objectLike(['database', 'actions']),
      fc.record({
        database: nastyString,
        actions: fc.array(fc.oneof(fc.constantFrom('read', 'query', 'write'), anyJson)),
      }),
    );
    const role = fc.oneof(
      anyJson,
      objectLike(['name', 'description', 'grants']),
      fc.record({
        name: fc.constantFrom('a', 'constructor', 'toString', '__proto__', 'reader'),
        grants: fc.array(grant, { maxLength: 3 }),
      }),
    );
    fc.assert(
      fc.property(
        fc.oneof(anyJson, fc.record({ roles: fc.oneof(anyJson, fc.array(role, { maxLength: 4 })) })),
        fc.boolean(),
        (doc, known) => onlyTrustedMsErrors(() => parseRoles(doc, known ? new Set(['x']) : undefined)),
      ),
      { numRuns: RUNS },
    );
  });

  it('public key PEM', () => {
    fc.assert(
      fc.property(pemText, (text) => onlyTrustedMsErrors(() => parsePublicKeyPem(text))),
      { numRuns: RUNS },
    );
  });

  describe('private key files', () => {
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'tms-fuzz-keys-'));
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });
    it('load as a key or a TrustedMsError', async () => {
      let i = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            pemText,
            fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b).toString('latin1')),
          ),
          async (text) => {
            const file = join(dir, `k${i++}.pem`);
            await writeFile(file, text, { mode: 0o600 });
            try {
              await loadPrivateKeyFile(file);
            } catch (err) {
              if (!isTrustedMsError(err)) throw err;
            }
          },
        ),
        { numRuns: 200 },
      );
    });
  });

  it('store and audit files (schema validators)', () => {
    fc.assert(
      fc.property(
        fc.oneof(anyJson, objectLike(['schemaVersion', 'users', 'roles', 'services', 'entries'])),
        (doc) =>
          onlyTrustedMsErrors(() => validateStoreData(doc, 'f')) &&
          onlyTrustedMsErrors(() => validateAuditData(doc, 'f')),
      ),
      { numRuns: RUNS },
    );
  });

  it('audit log lines', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tms-fuzz-audit-'));
    try {
      let i = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.array(
            fc.oneof(
              nastyString,
              anyJson.map((v) => JSON.stringify(v) ?? ''),
            ),
            { maxLength: 5 },
          ),
          async (lines) => {
            const log = new AuditLog({ file: join(dir, `a${i++}.jsonl`) });
            await writeFile(log.file, lines.map((l) => l.replaceAll('\n', ' ')).join('\n'));
            for (const op of [
              () => log.records(),
              () => log.verify(),
              () => log.append({ at: 't', actor: 'a', action: 'b', outcome: 'ok' }),
            ]) {
              try {
                await op();
              } catch (err) {
                if (!isTrustedMsError(err)) throw err;
              }
            }
          },
        ),
        { numRuns: 200 },
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('wire formats: tickets, challenges, signatures, attestation lists', () => {
    fc.assert(
      fc.property(nastyString, anyJson, fc.uint8Array({ maxLength: 400 }), (s, v, bytes) => {
        onlyTrustedMsErrors(() => decodeTicketUnverified(s));
        onlyTrustedMsErrors(() => signatureFromWire(s));
        onlyTrustedMsErrors(() => validateChallenge(v));
        onlyTrustedMsErrors(() => parseChallengeSigningBytes(bytes));
        onlyTrustedMsErrors(() => parseAttestationEntries(v));
        return true;
      }),
      { numRuns: RUNS },
    );
  });

  it('regression: a roles document with null entries or a role named like an Object method', () => {
    expect(() => parseRoles({ roles: [null] })).toThrow(expect.objectContaining({ code: 'INVALID_INPUT' }));
    const roles = parseRoles({ roles: [{ name: 'constructor', grants: [] }] });
    expect(Object.keys(roles)).toEqual(['constructor']);
    expect(Object.hasOwn(roles, 'constructor')).toBe(true);
  });
});
