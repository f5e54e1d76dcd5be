import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SCRYPT_PARAMS } from '../../../src/crypto/password.js';
import { jwkThumbprint } from '../../../src/crypto/thumbprint.js';
import { isTrustedMsError } from '../../../src/errors.js';
import type { Role } from '../../../src/policy/types.js';
import { FileLabStore } from '../../../src/store/file-lab-store.js';
import type { UserKey } from '../../../src/store/schema.js';
import { revokeUserIn } from '../../../src/users/revocations.js';
import {
  addUser,
  addUserKey,
  checkPassword,
  getUser,
  importHtpasswd,
  listUsers,
  REMOVED_USER_RECORD_SECONDS,
  removeUser,
  toPublicUser,
} from '../../../src/users/users.js';

/** The hashes verifyPassword was really run against (it still runs: a passthrough, not a stand-in). */
const verified: string[] = vi.hoisted(() => []);
vi.mock('../../../src/crypto/password.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../../src/crypto/password.js')>();
  return {
    ...real,
    verifyPassword: (password: string, hash: string) => {
      verified.push(hash);
      return real.verifyPassword(password, hash);
    },
  };
});

const ROLES = (): Record<string, Role> => ({
  admin: {
    name: 'admin',
    description: 'all',
    grants: [{ database: '*', actions: ['read', 'query', 'write'] }],
  },
  analyst: {
    name: 'analyst',
    description: 'reads',
    grants: [{ database: 'sales', actions: ['read', 'query'] }],
  },
});
const clock = () => new Date('2030-05-06T07:08:09.000Z');
const fixture = (name: string) =>
  readFile(new URL(`../../../fixtures/htpasswd/${name}`, import.meta.url), 'utf8');
// Real keys, one per label: the store checks that a key's PEM, type and thumbprint agree.
const KEYS = new Map<string, UserKey>();
const key = (label: string): UserKey => {
  let k = KEYS.get(label);
  if (k === undefined) {
    const pub = generateKeyPairSync('ed25519').publicKey;
    k = {
      thumbprint: jwkThumbprint(pub),
      type: 'ed25519',
      publicKeyPem: pub.export({ format: 'pem', type: 'spki' }).toString(),
      createdAt: '2030-01-01T00:00:00.000Z',
    };
    KEYS.set(label, k);
  }
  return k;
};
const tp = (label: string): string => key(label).thumbprint;

let home: string;
let store: FileLabStore;
beforeEach(async () => {
  home = await mkdtemp(join(tmpdir(), 'tms-users-'));
  store = new FileLabStore(home, { seedRoles: ROLES, now: clock });
});
afterEach(async () => {
  await rm(home, { recursive: true, force: true });
});

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (isTrustedMsError(err)) return err.code;
    throw err;
  }
  throw new Error('expected a TrustedMsError');
}

describe('addUser', () => {
  it('stores a scrypt hash, never the password, and audits the addition', async () => {
    const user = await addUser(store, { name: 'alice', role: 'analyst', password: 'alice-pw' });
    expect(user).toMatchObject({
      name: 'alice',
      role: 'analyst',
      keys: [],
      source: 'cli',
      createdAt: clock().toISOString(),
    });
    expect(user.password).toMatch(/^\$scrypt\$ln=14,r=8,p=1\$/);
    expect(await readFile(join(home, 'store.json'), 'utf8')).not.toContain('alice-pw');
    const pub = toPublicUser(user);
    expect(pub).not.toHaveProperty('password');
    expect(pub.passwordScheme).toBe('scrypt');
    expect(await store.auditEntries()).toEqual([
      {
        at: clock().toISOString(),
        actor: 'cli',
        action: 'user.add',
        target: 'alice',
        outcome: 'ok',
        detail: { role: 'analyst' },
      },
    ]);
  });

  it('refuses a duplicate with USER_EXISTS and leaves the first user as it was', async () => {
    const first = await addUser(store, { name: 'alice', role: 'analyst', password: 'one' });
    expect(await codeOf(addUser(store, { name: 'alice', role: 'admin', password: 'two' }))).toBe(
      'USER_EXISTS',
    );
    expect(await getUser(store, 'alice')).toEqual(first);
    expect((await store.auditEntries()).at(-1)).toMatchObject({
      action: 'user.add',
      outcome: 'error',
      code: 'USER_EXISTS',
    });
  });

  it('refuses an unknown role with ROLE_NOT_FOUND listing the valid ones', async () => {
    await expect(addUser(store, { name: 'alice', role: 'wizard', password: 'pw' })).rejects.toMatchObject({
      code: 'ROLE_NOT_FOUND',
      message: expect.stringContaining('valid roles: admin, analyst'),
    });
    // Names of Object.prototype are not roles.
    expect(await codeOf(addUser(store, { name: 'alice', role: 'toString', password: 'pw' }))).toBe(
      'ROLE_NOT_FOUND',
    );
    expect(await listUsers(store)).toEqual([]);
  });

  it('refuses invalid names with INVALID_NAME', async () => {
    for (const name of ['Alice', '1x', '', 'a b', '__proto__']) {
      expect(await codeOf(addUser(store, { name, role: 'analyst', password: 'pw' }))).toBe('INVALID_NAME');
    }
  });

  it('treats `constructor` as an ordinary, absent name', async () => {
    await addUser(store, { name: 'constructor', role: 'analyst', password: 'pw' });
    expect((await getUser(store, 'constructor')).name).toBe('constructor');
  });

  it('refuses an empty password', async () => {
    expect(await codeOf(addUser(store, { name: 'alice', role: 'analyst', password: '' }))).toBe(
      'PASSWORD_REQUIRED',
    );
  });
});

describe('getUser, listUsers, removeUser', () => {
  it('lists users sorted by name, gets and removes them', async () => {
    await addUser(store, { name: 'zoe', role: 'analyst', password: 'pw-z' });
    await addUser(store, { name: 'bob', role: 'admin', password: 'pw-b' });
    expect((await listUsers(store)).map((u) => u.name)).toEqual(['bob', 'zoe']);
    expect((await getUser(store, 'bob')).role).toBe('admin');
    expect((await removeUser(store, 'bob')).name).toBe('bob');
    expect((await listUsers(store)).map((u) => u.name)).toEqual(['zoe']);
    expect((await store.auditEntries()).at(-1)).toMatchObject({
      action: 'user.remove',
      target: 'bob',
      outcome: 'ok',
    });
  });

  it('answers USER_NOT_FOUND for unknown users', async () => {
    expect(await codeOf(getUser(store, 'nobody'))).toBe('USER_NOT_FOUND');
    expect(await codeOf(getUser(store, 'constructor'))).toBe('USER_NOT_FOUND');
    expect(await codeOf(removeUser(store, 'nobody'))).toBe('USER_NOT_FOUND');
    expect((await store.auditEntries()).at(-1)).toMatchObject({
      action: 'user.remove',
      outcome: 'error',
      code: 'USER_NOT_FOUND',
    });
  });
});

describe('addUserKey', () => {
  it('adds keys and refuses the same thumbprint twice with KEY_EXISTS', async () => {
    await addUser(store, { name: 'alice', role: 'analyst', password: 'pw' });
    const after = await addUserKey(store, 'alice', key('tp-1'));
    expect(after.keys.map((k) => k.thumbprint)).toEqual([tp('tp-1')]);
    await addUserKey(store, 'alice', key('tp-2'));
    expect(await codeOf(addUserKey(store, 'alice', key('tp-1')))).toBe('KEY_EXISTS');
    expect((await getUser(store, 'alice')).keys.map((k) => k.thumbprint)).toEqual([tp('tp-1'), tp('tp-2')]);
    expect(await codeOf(addUserKey(store, 'nobody', key('tp-1')))).toBe('USER_NOT_FOUND');
  });
});

describe('checkPassword', () => {
  it('accepts the right password and audits it', async () => {
    await addUser(store, { name: 'alice', role: 'analyst', password: 'alice-pw' });
    const before = await readFile(join(home, 'store.json'));
    const result = await checkPassword(store, 'alice', 'alice-pw');
    expect(result.upgraded).toBe(false);
    expect(result.user.name).toBe('alice');
    expect(await readFile(join(home, 'store.json'))).toEqual(before); // nothing to upgrade
    expect((await store.auditEntries()).at(-1)).toMatchObject({
      action: 'auth.password',
      target: 'alice',
      outcome: 'allowed',
    });
  });

  it('gives the same AUTH_FAILED for a wrong password and an unknown user', async () => {
    await addUser(store, { name: 'alice', role: 'analyst', password: 'alice-pw' });
    const wrong = await checkPassword(store, 'alice', 'nope').catch((e: unknown) => e);
    const unknown = await checkPassword(store, 'mallory', 'nope').catch((e: unknown) => e);
    const invalid = await checkPassword(store, 'Not A Name', 'nope').catch((e: unknown) => e);
    for (const err of [wrong, unknown, invalid]) {
      expect(err).toMatchObject({ code: 'AUTH_FAILED', message: 'authentication failed' });
    }
    const entries = (await store.auditEntries()).filter((e) => e.action === 'auth.password');
    expect(entries.map((e) => [e.target, e.outcome, e.code])).toEqual([
      ['alice', 'denied', 'AUTH_FAILED'],
      ['mallory', 'denied', 'AUTH_FAILED'],
      ['Not A Name', 'denied', 'AUTH_FAILED'],
    ]);
  });

  it('spends a scrypt verification with the current parameters on unknown users too', async () => {
    await addUser(store, { name: 'alice', role: 'analyst', password: 'alice-pw' });
    verified.length = 0;
    for (const name of ['alice', 'mallory', 'Not A Name'])
      await checkPassword(store, name, 'nope').catch(() => undefined);
    // one real verification each (the passthrough records it): the same cost, whether the user exists or not
    const { ln, r, p } = SCRYPT_PARAMS;
    expect(verified).toHaveLength(3);
    for (const hash of verified) expect(hash.startsWith(`$scrypt$ln=${ln},r=${r},p=${p}$`)).toBe(true);
  });
});

describe('removeUser and revocation', () => {
  it("revokes the removed user's tickets, frees the name, and forgets records of users gone for a day", async () => {
    let now = new Date('2030-05-06T07:08:09.000Z');
    const timed = new FileLabStore(home, { seedRoles: ROLES, now: () => now });
    for (const name of ['gone', 'kept', 'later'])
      await addUser(timed, { name, role: 'analyst', password: 'pw' });
    await removeUser(timed, 'gone');
    await revokeUserIn(timed, 'kept', 'test'); // an operator's revocation of a user that still exists
    const first = (await timed.data()).revocations?.users;
    expect(first?.gone).toMatchObject({ revoked: true, notBefore: now.getTime() / 1000 + 1 });

    // the name added again may log in: the ban goes, the notBefore (old tickets refused) stays
    await addUser(timed, { name: 'gone', role: 'analyst', password: 'pw2' });
    expect((await timed.data()).revocations?.users.gone).toMatchObject({ revoked: false });
    await removeUser(timed, 'gone');

    now = new Date(now.getTime() + (REMOVED_USER_RECORD_SECONDS + 60) * 1000);
    await removeUser(timed, 'later');
    const users = (await timed.data()).revocations?.users ?? {};
    expect(Object.keys(users).sort()).toEqual(['kept', 'later']);
  });
});

describe('importHtpasswd', () => {
  it('imports the htpasswd -B fixture, verifies, and upgrades bcrypt to scrypt at the first login', async () => {
    const names = await importHtpasswd(store, await fixture('bcrypt.htpasswd'), 'analyst');
    expect(names).toEqual(['carol', 'dave']);
    const carol = await getUser(store, 'carol');
    expect(carol).toMatchObject({ role: 'analyst', source: 'htpasswd' });
    expect(carol.password).toMatch(/^\$2y\$05\$/);
    expect(toPublicUser(carol).passwordScheme).toBe('bcrypt');

    expect(await codeOf(checkPassword(store, 'carol', 'carol-pass-2'))).toBe('AUTH_FAILED');
    expect((await getUser(store, 'carol')).password).toBe(carol.password); // no upgrade on failure

    const first = await checkPassword(store, 'carol', 'carol-pass-1');
    expect(first.upgraded).toBe(true);
    const upgraded = (await getUser(store, 'carol')).password;
    expect(upgraded).toMatch(/^\$scrypt\$ln=14,r=8,p=1\$/);
    expect(toPublicUser(await getUser(store, 'carol')).passwordScheme).toBe('scrypt');

    const second = await checkPassword(store, 'carol', 'carol-pass-1');
    expect(second.upgraded).toBe(false);
    expect((await getUser(store, 'carol')).password).toBe(upgraded);
    expect(await codeOf(checkPassword(store, 'carol', 'wrong'))).toBe('AUTH_FAILED');

    expect((await checkPassword(store, 'dave', 'dave-pass-2')).upgraded).toBe(true);
    const audit = await store.auditEntries();
    expect(audit.find((e) => e.action === 'user.import-htpasswd')).toMatchObject({
      outcome: 'ok',
      detail: { role: 'analyst', users: ['carol', 'dave'] },
    });
    expect(audit.filter((e) => e.detail?.upgraded === true).map((e) => e.target)).toEqual(['carol', 'dave']);
  });

  it('imports nothing from the mixed fixture', async () => {
    expect(await codeOf(importHtpasswd(store, await fixture('mixed.htpasswd'), 'analyst'))).toBe(
      'HTPASSWD_UNSUPPORTED_FORMAT',
    );
    expect(await listUsers(store)).toEqual([]);
  });

  it('refuses names already in the store with USER_EXISTS listing them, importing nothing', async () => {
    await addUser(store, { name: 'carol', role: 'admin', password: 'x' });
    await addUser(store, { name: 'dave', role: 'admin', password: 'y' });
    await expect(importHtpasswd(store, await fixture('bcrypt.htpasswd'), 'analyst')).rejects.toMatchObject({
      code: 'USER_EXISTS',
      message: expect.stringContaining('carol, dave'),
    });
    expect((await getUser(store, 'carol')).role).toBe('admin');
  });

  it('refuses an unknown role', async () => {
    expect(await codeOf(importHtpasswd(store, await fixture('bcrypt.htpasswd'), 'wizard'))).toBe(
      'ROLE_NOT_FOUND',
    );
    expect(await listUsers(store)).toEqual([]);
  });

  it('refuses malformed files with HTPASSWD_INVALID', async () => {
    expect(await codeOf(importHtpasswd(store, 'carol\n', 'analyst'))).toBe('HTPASSWD_INVALID');
  });

  const htpasswdBin = (() => {
    try {
      execFileSync('htpasswd', ['-nbB', 'probe', 'probe'], { stdio: 'pipe' });
      return true;
    } catch {
      return false;
    }
  })();
  if (!htpasswdBin) {
    console.warn(
      'skipping the fresh `htpasswd -B` import test: htpasswd is not on PATH (apt-get install apache2-utils)',
    );
  }

  it.skipIf(!htpasswdBin)('imports a file made just now by `htpasswd -B -b -c`', async () => {
    const file = join(home, 'fresh.htpasswd');
    execFileSync('htpasswd', ['-B', '-b', '-c', file, 'erin', 'erin fresh pw'], { stdio: 'pipe' });
    execFileSync('htpasswd', ['-B', '-C', '6', '-b', file, 'frank', 'frank-ü-pw'], { stdio: 'pipe' });
    expect(await importHtpasswd(store, await readFile(file, 'utf8'), 'admin')).toEqual(['erin', 'frank']);
    expect((await checkPassword(store, 'erin', 'erin fresh pw')).upgraded).toBe(true);
    expect((await checkPassword(store, 'frank', 'frank-ü-pw')).upgraded).toBe(true);
    expect(await codeOf(checkPassword(store, 'frank', 'frank-u-pw'))).toBe('AUTH_FAILED');
  });
});
