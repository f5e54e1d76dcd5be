import { generateKeyPairSync } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { loadSession, saveSession } from '../../../src/client/session.js';
import { asTrustedMsError } from '../../../src/command-support/base-command.js';
import { writePrivateKeyFile } from '../../../src/crypto/keys.js';
import { diskFaultOf, fileError } from '../../../src/disk-errors.js';
import { isTrustedMsError, type TrustedMsError } from '../../../src/errors.js';
import { defaultRoles } from '../../../src/policy/roles.js';
import { toHttpError } from '../../../src/services/http.js';
import { AuditLog } from '../../../src/store/audit/audit-log.js';
import { FileLabStore } from '../../../src/store/file-lab-store.js';
import { addUser } from '../../../src/users/users.js';
import { canMountTmpfs, describeWithTmpfs, mountTmpfs } from '../../support/tmpfs.js';

/**
 * A full and a read-only disk under every kind of file the project writes, caused for real on a
 * tmpfs this test mounts: the kernel's ENOSPC and EROFS, not a mocked fs.
 */

function errno(code: string, path = '/x/y'): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: fake, write '${path}'`), { code, path });
}

async function caught(p: Promise<unknown>): Promise<TrustedMsError> {
  try {
    await p;
  } catch (err) {
    if (isTrustedMsError(err)) return err;
    throw err;
  }
  throw new Error('expected a failure');
}

it('maps each OS cause to one code, with the path, the cause and a hint that fits', () => {
  const full = fileError('/h/store.json', 'write', errno('ENOSPC'));
  expect(full.code).toBe('DISK_FULL');
  expect(full.message).toMatch(/\/h\/store\.json.*ENOSPC: no space left on device/);
  expect(full.actions.join(' ')).toMatch(/free space.*df -h \/h/);
  expect(fileError('/h/f', 'write', errno('EDQUOT')).code).toBe('DISK_FULL');
  const ro = fileError('/h/f', 'write', errno('EROFS'));
  expect(ro.code).toBe('DISK_READ_ONLY');
  expect(ro.actions.join(' ')).toMatch(/read-only: remount it read-write/);
  const denied = fileError('/h/f', 'write', errno('EACCES'));
  expect(denied.code).toBe('DISK_READ_ONLY');
  expect(denied.actions.join(' ')).toMatch(/may not write in \/h/);
  // A read refused is not a read-only disk.
  expect(fileError('/h/f', 'read', errno('EACCES'), { write: false }).code).toBe('STORE_IO');
  expect(fileError('/h/f', 'write', errno('EIO')).message).toMatch(/EIO/);
});

it('a disk fault nobody mapped is still the disk code at the CLI and over HTTP, never INTERNAL', () => {
  expect(asTrustedMsError(errno('ENOSPC', '/h/lab/x.json')).code).toBe('DISK_FULL');
  expect(asTrustedMsError(errno('EROFS', '/h/lab/x.json')).message).toMatch(/\/h\/lab\/x\.json/);
  const http = toHttpError(errno('ENOSPC'));
  expect([http.code, http.httpStatus]).toEqual(['DISK_FULL', 507]);
  expect(diskFaultOf(new Error('boom'))).toBeUndefined();
  expect(asTrustedMsError(new Error('boom')).code).toBe('INTERNAL');
});

const available = await canMountTmpfs();

/** What openLabStore gives a home without a PostgreSQL store, with its files named. */
const fileStoreIn = (home: string): FileLabStore => new FileLabStore(home, { seedRoles: defaultRoles });

describeWithTmpfs(
  available,
  'a full and a read-only disk under the store, audit log, sessions and keys',
  () => {
    it('full: user add and the audit log fail with DISK_FULL (cause kept), nothing half-written, then work again', async () => {
      await using fs = await mountTmpfs(1024 * 1024);
      const home = join(fs.dir, 'home');
      const store = fileStoreIn(home);
      await addUser(store, { name: 'alice', role: 'admin', password: 'pw-alice' });
      const storeBefore = await readFile(store.storeFile, 'utf8');

      await fs.fill();
      const err = await caught(addUser(store, { name: 'bob', role: 'admin', password: 'pw-bob' }));
      expect(err.code).toBe('DISK_FULL');
      expect(err.message).toMatch(/store\.json.*ENOSPC/);
      expect(await readFile(store.storeFile, 'utf8')).toBe(storeBefore);
      expect((await readdir(home)).filter((f) => f.endsWith('.tmp'))).toEqual([]);

      // Append until the log is refused: the refused append may have been taken in part by the
      // kernel (a short write); its cause must be ENOSPC, not "error", and no cut line may remain.
      let refused: TrustedMsError | undefined;
      for (let i = 0; i < 500 && refused === undefined; i++) {
        refused = await store
          .auditRequired({ actor: 'test', action: 'user.add', target: 'x'.repeat(40), outcome: 'ok' })
          .then(
            () => undefined,
            (e: TrustedMsError) => e,
          );
      }
      expect(refused?.code).toBe('DISK_FULL');
      expect(refused?.message).toMatch(/user\.add refused: it cannot be recorded in the audit log: .*ENOSPC/);
      const text = await readFile(store.auditFile, 'utf8');
      expect(text.endsWith('\n')).toBe(true);
      expect((await store.verifyAudit()).ok).toBe(true);

      await fs.free();
      await addUser(store, { name: 'bob', role: 'admin', password: 'pw-bob' });
      expect(Object.keys((await store.data()).users).sort()).toEqual(['alice', 'bob']);
      expect((await store.verifyAudit()).ok).toBe(true);
    });

    it('full: a session file and a private key are not written, the old ones stay, no temp file is left', async () => {
      await using fs = await mountTmpfs(1024 * 1024);
      const home = join(fs.dir, 'home');
      const old = { user: 'alice', labId: 'lab1', posture: 'trusted' as const, ticket: 'old' };
      await saveSession(home, old);
      await fs.fill();
      const err = await caught(saveSession(home, { ...old, ticket: 'new'.repeat(2000) }));
      expect(err.code).toBe('DISK_FULL');
      expect(err.message).toMatch(/sessions\/alice\.json.*ENOSPC/);
      expect((await loadSession(home, 'alice')).ticket).toBe('old');
      expect(await readdir(join(home, 'sessions'))).toEqual(['alice.json']);

      const keyDir = join(fs.dir, 'keys');
      const { privateKey } = generateKeyPairSync('ed25519');
      const keyErr = await caught(writePrivateKeyFile(join(keyDir, 'bob.pem'), privateKey));
      expect(keyErr.code).toBe('DISK_FULL');
      expect(await readdir(keyDir).catch(() => [])).toEqual([]);

      await fs.free();
      await saveSession(home, { ...old, ticket: 'new' });
      expect((await loadSession(home, 'alice')).ticket).toBe('new');
      await writePrivateKeyFile(join(keyDir, 'bob.pem'), privateKey);
      expect((await stat(join(keyDir, 'bob.pem'))).mode & 0o777).toBe(0o600);
    });

    it('read-only: writes fail with DISK_READ_ONLY (EROFS), reads still work, and work again after remount rw', async () => {
      await using fs = await mountTmpfs(1024 * 1024);
      const home = join(fs.dir, 'home');
      const store = fileStoreIn(home);
      await addUser(store, { name: 'alice', role: 'admin', password: 'pw-alice' });
      await fs.remount('ro');
      try {
        const err = await caught(addUser(store, { name: 'bob', role: 'admin', password: 'pw-bob' }));
        expect(err.code).toBe('DISK_READ_ONLY');
        expect(err.message).toMatch(/EROFS: read-only file system/);
        const auditErr = await caught(
          new AuditLog({ file: store.auditFile }).append({
            at: 'now',
            actor: 't',
            action: 'a',
            outcome: 'ok',
          }),
        );
        expect(auditErr.code).toBe('DISK_READ_ONLY');
        const sessionErr = await caught(saveSession(home, { user: 'alice', labId: 'l', posture: 'none' }));
        expect(sessionErr.code).toBe('DISK_READ_ONLY');
        const { privateKey } = generateKeyPairSync('ed25519');
        const keyErr = await caught(writePrivateKeyFile(join(fs.dir, 'keys', 'alice.pem'), privateKey));
        expect(keyErr.code).toBe('DISK_READ_ONLY');
        expect(Object.keys((await store.data()).users)).toEqual(['alice']);
        expect((await store.verifyAudit()).ok).toBe(true);
      } finally {
        await fs.remount('rw');
      }
      await addUser(store, { name: 'bob', role: 'admin', password: 'pw-bob' });
      expect(Object.keys((await store.data()).users).sort()).toEqual(['alice', 'bob']);
    });
  },
);
