import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { splitStdinSecrets } from '../../../src/client/login-key.js';
import { jwkThumbprint } from '../../../src/crypto/thumbprint.js';
import { isTrustedMsError } from '../../../src/errors.js';
import type { Role } from '../../../src/policy/types.js';
import { parseRevocationList, RevocationView } from '../../../src/protocol/revocation-list.js';
import { RevocationBook } from '../../../src/services/security/revocations.js';
import { FileLabStore } from '../../../src/store/file-lab-store.js';
import type { UserKey } from '../../../src/store/schema.js';
import { reinstateUserIn, revokeUserIn } from '../../../src/users/revocations.js';
import { addUser, addUserKey, removeUserKey, replaceUserKeys } from '../../../src/users/users.js';

/**
 * Several keys per user, and what removing one does: the key goes, the tickets bound to it are
 * refused from the next second on (published like `user revoke`'s), the others stay; and the store
 * migration that carries those refusals (schema 1 → 2).
 */

const ROLES = (): Record<string, Role> => ({
  analyst: { name: 'analyst', description: 'reads', grants: [{ database: 'sales', actions: ['read'] }] },
});
const T0 = Date.parse('2030-05-06T07:08:09.000Z');
let clockMs = T0;
const clock = () => new Date(clockMs);
const sec = () => Math.floor(clockMs / 1000);
// Real keys: the store checks that a key's PEM, type and thumbprint agree.
const REAL = new Map<string, string>();
function realThumbprint(): string {
  const k = generateKeyPairSync('ed25519').publicKey;
  const thumbprint = jwkThumbprint(k);
  REAL.set(thumbprint, k.export({ format: 'pem', type: 'spki' }).toString());
  return thumbprint;
}
const LAPTOP = realThumbprint();
const TOKEN = realThumbprint();
const key = (thumbprint: string): UserKey => ({
  thumbprint,
  type: 'ed25519',
  publicKeyPem: REAL.get(thumbprint) ?? '',
  createdAt: clock().toISOString(),
});

let home: string;
let store: FileLabStore;
beforeEach(async () => {
  clockMs = T0;
  home = await mkdtemp(join(tmpdir(), 'tms-user-keys-'));
  store = new FileLabStore(home, { seedRoles: ROLES, now: clock });
  await addUser(store, { name: 'alice', role: 'analyst', password: 'alice-pw' });
  await addUserKey(store, 'alice', key(LAPTOP));
  await addUserKey(store, 'alice', key(TOKEN));
});
afterEach(() => rm(home, { recursive: true, force: true }));

/** The list as the security service would publish it now, held as a gateway holds it. */
async function published(): Promise<RevocationView> {
  const book = new RevocationBook(store);
  await book.load();
  const view = new RevocationView();
  view.replace(book.list());
  return view;
}

const ticket = (iat: number, jkt?: string) => ({ sub: 'alice', iat, ...(jkt ? { cnf: { jkt } } : {}) });

describe('removeUserKey', () => {
  it('removes one key, refuses only the tickets bound to it, and audits it', async () => {
    const before = sec();
    const r = await removeUserKey(store, 'alice', LAPTOP);
    expect(r.notBefore).toBe(before + 1);
    expect(r.user.keys.map((k) => k.thumbprint)).toEqual([TOKEN]);
    const view = await published();
    expect(view.ticketRevoked(ticket(before, LAPTOP))).toBe(true);
    expect(view.ticketRevoked(ticket(before, TOKEN))).toBe(false);
    // The key added again later: its new tickets work.
    expect(view.ticketRevoked(ticket(r.notBefore, LAPTOP))).toBe(false);
    // A ticket bound to no key (paper) cannot show it was not the removed key's.
    expect(view.ticketRevoked(ticket(before))).toBe(true);
    expect(view.ticketRevoked(ticket(r.notBefore))).toBe(false);
    expect(view.userRevoked('alice')).toBe(false);
    expect((await store.auditEntries()).at(-1)).toMatchObject({
      action: 'user.key.remove',
      target: 'alice',
      outcome: 'ok',
      detail: { thumbprint: LAPTOP, notBefore: before + 1 },
    });
  });

  it('names the registered thumbprints when the key is not one of them', async () => {
    try {
      await removeUserKey(store, 'alice', 'X'.repeat(43));
      expect.unreachable();
    } catch (err) {
      expect(isTrustedMsError(err) && err.code).toBe('KEY_NOT_FOUND');
      expect((err as Error).message).toContain(`registered: ${LAPTOP}, ${TOKEN}`);
    }
    expect((await store.data()).users.alice?.keys).toHaveLength(2);
  });

  it('keeps the key refusals through a revoke and reinstate of the user', async () => {
    const before = sec();
    await removeUserKey(store, 'alice', LAPTOP);
    clockMs += 5000;
    await revokeUserIn(store, 'alice', 'cli');
    clockMs += 5000;
    await reinstateUserIn(store, 'alice', 'cli');
    const view = await published();
    expect(view.ticketRevoked(ticket(sec(), LAPTOP))).toBe(false);
    expect(view.ticketRevoked(ticket(before, LAPTOP))).toBe(true);
    expect((await store.data()).revocations?.users.alice?.keys).toEqual({ [LAPTOP]: before + 1 });
  });

  it('drops refusals older than a day when another key is removed', async () => {
    await removeUserKey(store, 'alice', LAPTOP);
    clockMs += 2 * 24 * 3600_000;
    await removeUserKey(store, 'alice', TOKEN);
    expect(Object.keys((await store.data()).revocations?.users.alice?.keys ?? {})).toEqual([TOKEN]);
  });
});

describe('replaceUserKeys (user keygen --force)', () => {
  it("refuses the replaced keys' tickets, not the new key's", async () => {
    const before = sec();
    const NEW = realThumbprint();
    const user = await replaceUserKeys(store, 'alice', key(NEW));
    expect(user.keys.map((k) => k.thumbprint)).toEqual([NEW]);
    const view = await published();
    expect(view.ticketRevoked(ticket(before, LAPTOP))).toBe(true);
    expect(view.ticketRevoked(ticket(before, TOKEN))).toBe(true);
    expect(view.ticketRevoked(ticket(before, NEW))).toBe(false);
  });
});

describe('store schema 1 → 2', () => {
  it('reads a version 1 store as version 2 and writes it as 2 at the next change only', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tms-migrate-'));
    try {
      const v1 = JSON.stringify({
        schemaVersion: 1,
        users: {
          bob: {
            name: 'bob',
            role: 'analyst',
            password: 'x',
            keys: [key(LAPTOP)],
            createdAt: 't',
            updatedAt: 't',
          },
        },
        roles: ROLES(),
        services: {},
        revocations: {
          users: { bob: { name: 'bob', revoked: false, notBefore: 5, revokedAt: 't' } },
          services: {},
        },
      });
      await writeFile(join(dir, 'store.json'), v1);
      const old = new FileLabStore(dir, { now: clock });
      const data = await old.data();
      expect(data.schemaVersion).toBe(2);
      expect(data.users.bob?.keys.map((k) => k.thumbprint)).toEqual([LAPTOP]);
      expect(await readFile(join(dir, 'store.json'), 'utf8')).toBe(v1);
      await removeUserKey(old, 'bob', LAPTOP);
      const written = JSON.parse(await readFile(join(dir, 'store.json'), 'utf8'));
      expect(written.schemaVersion).toBe(2);
      expect(written.revocations.users.bob).toMatchObject({ notBefore: 5, keys: { [LAPTOP]: sec() + 1 } });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses a key refusal that is not a number as STORE_CORRUPT', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tms-migrate-'));
    try {
      await writeFile(
        join(dir, 'store.json'),
        JSON.stringify({
          schemaVersion: 2,
          users: {},
          roles: {},
          services: {},
          revocations: {
            users: {
              bob: { name: 'bob', revoked: false, notBefore: 0, revokedAt: 't', keys: { [LAPTOP]: 'soon' } },
            },
            services: {},
          },
        }),
      );
      await expect(new FileLabStore(dir).data()).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('the published list with key refusals, as a part receives it', () => {
  const list = (keys: unknown) => ({
    version: 'e.1',
    users: { alice: { notBefore: 0, revoked: false, keys } },
    quarantined: [],
    untrusted: [],
  });

  it('keeps a well-formed entry and refuses a malformed one whole', () => {
    expect(parseRevocationList(list({ [LAPTOP]: 5 })).users.alice?.keys).toEqual({ [LAPTOP]: 5 });
    for (const bad of [{ short: 5 }, { [LAPTOP]: '5' }, [5], null]) {
      expect(() => parseRevocationList(list(bad))).toThrow(/revocation list is invalid/);
    }
  });
});

describe('splitStdinSecrets (user login --password-stdin --passphrase-stdin)', () => {
  it('reads the password, then the passphrase, one per line; one alone takes the whole input', () => {
    expect(splitStdinSecrets('pw\nphrase with spaces', { password: true, passphrase: true })).toEqual({
      password: 'pw',
      passphrase: 'phrase with spaces',
    });
    expect(splitStdinSecrets('only\n', { password: false, passphrase: true })).toEqual({
      password: undefined,
      passphrase: 'only\n',
    });
    expect(() => splitStdinSecrets('one line', { password: true, passphrase: true })).toThrow(
      /password, then the passphrase/,
    );
  });
});
