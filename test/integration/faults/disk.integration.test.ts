import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { login } from '../../../src/client/login.js';
import { loadPrivateKeyFile, privateKeyPath } from '../../../src/crypto/keys.js';
import { isTrustedMsError, type TrustedMsError } from '../../../src/errors.js';
import { trustLabEdge } from '../../../src/kernel/edge-client.js';
import { labDown } from '../../../src/lab/down.js';
import { labUp } from '../../../src/lab/up.js';
import { openUserAdmin } from '../../../src/users/admin.js';
import { keygenForUser } from '../../../src/users/keygen.js';
import { cli, cliJson } from '../../support/cli.js';
import { canMountTmpfs, describeWithTmpfs, mountTmpfs } from '../../support/tmpfs.js';

/**
 * A full and a read-only lab home, for real: the home is a small tmpfs this test mounts, the lab a
 * real `trusted` process lab (security service, gateway, services), the commands the built CLI.
 */

type Envelope = { status: number; error?: { code: string; message: string; actions: string[] } };

const available = await canMountTmpfs();

describeWithTmpfs(available, 'a full disk under a running trusted lab, then space freed', () => {
  it('logins and admin writes fail with DISK_FULL, nothing is corrupted, and all works again once space is back', async () => {
    await using fs = await mountTmpfs(48 * 1024 * 1024);
    const keysDir = await mkdtemp(join(tmpdir(), 'tms-disk-keys-'));
    const home = join(fs.dir, 'home');
    const env = { home, keys: keysDir };
    try {
      await mkdir(home, { mode: 0o700 });
      const admin = await openUserAdmin(home);
      await admin.addUser({ name: 'alice', role: 'admin', password: 'alice-pw' });
      await keygenForUser(admin, { user: 'alice', type: 'ed25519', keyDir: keysDir, force: false });
      const { state } = await labUp({ home, posture: 'trusted', services: 2 });
      await trustLabEdge(state);
      const key = await loadPrivateKeyFile(privateKeyPath(keysDir, 'alice'));

      expect(
        (await cli(env, ['user', 'login', 'alice', '--password-stdin'], { input: 'alice-pw' })).exitCode,
      ).toBe(0);

      await fs.fill();

      // The CLI: the login fails with the disk's code and exit 6, never INTERNAL (the security
      // service may still fit a record in the audit log's last page; the session file then cannot).
      const cliLogin = await cliJson<Envelope>(env, ['user', 'login', 'alice', '--password-stdin'], {
        input: 'alice-pw',
      });
      expect(cliLogin.exitCode).toBe(6);
      expect(cliLogin.json.error?.code).toBe('DISK_FULL');
      expect(cliLogin.json.error?.message).toMatch(/ENOSPC/);

      // The security service: once its audit log is full, it refuses the login and says why. More
      // than five such refusals in a row: none of them may count towards the lock-out.
      let refused: TrustedMsError | undefined;
      for (let i = 0; i < 40 && refused === undefined; i++) {
        refused = await login(state, 'alice', 'alice-pw', key).then(
          () => undefined,
          (err: unknown) => (isTrustedMsError(err) ? err : Promise.reject(err)),
        );
      }
      expect(refused?.code).toBe('DISK_FULL');
      expect(refused?.message).toMatch(
        /refused: it cannot be recorded in the audit log: .*audit\.jsonl.*ENOSPC/,
      );
      for (let i = 0; i < 6; i++) {
        const again = await login(state, 'alice', 'alice-pw', key).catch((err: TrustedMsError) => err);
        expect((again as TrustedMsError).code).toBe('DISK_FULL');
      }

      // An admin write, through the security service's admin API.
      const add = await cliJson<Envelope>(
        env,
        ['user', 'add', 'carol', '--role', 'analyst', '--password-stdin'],
        {
          input: 'carol-pw',
        },
      );
      expect(add.exitCode).toBe(6);
      expect(add.json.error?.code).toBe('DISK_FULL');
      expect(add.json.error?.message).toMatch(/store\.json.*ENOSPC/);

      const status = await cliJson<{ result: { disk?: { state: string } } }>(env, ['lab', 'status']);
      expect(status.json.result.disk?.state).toBe('full');
      expect((await cli(env, ['lab', 'status'])).stdout).toMatch(
        /FULL, logins and admin writes are refused \(DISK_FULL\)/,
      );

      // Nothing corrupted, nothing half-written left about.
      expect((await cli(env, ['audit', 'verify'])).exitCode).toBe(0);
      expect((await readdir(home)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
      expect((await cli(env, ['user', 'show', 'carol'])).exitCode).toBe(3);

      await fs.free();

      // Space is back: the same commands work, without restarting anything.
      const back = await cli(env, ['user', 'login', 'alice', '--password-stdin'], { input: 'alice-pw' });
      expect(back.exitCode, back.stderr).toBe(0);
      const added = await cli(env, ['user', 'add', 'carol', '--role', 'analyst', '--password-stdin'], {
        input: 'carol-pw',
      });
      expect(added.exitCode, added.stderr).toBe(0);
      expect((await cli(env, ['call', 'accounts', '/db/accounts/records', '--as', 'alice'])).exitCode).toBe(
        0,
      );
      expect((await cli(env, ['audit', 'verify'])).exitCode).toBe(0);
      expect(
        (await cliJson<{ result: { disk?: { state: string } } }>(env, ['lab', 'status'])).json.result.disk
          ?.state,
      ).toBe('ok');
    } finally {
      await fs.free();
      await labDown(home).catch(() => undefined);
      await rm(keysDir, { recursive: true, force: true });
    }
  });
});

describeWithTmpfs(available, 'a read-only lab home', () => {
  it('admin writes and lab up fail with DISK_READ_ONLY (exit 6), reads work, and writes work again after remount rw', async () => {
    await using fs = await mountTmpfs(8 * 1024 * 1024);
    const home = join(fs.dir, 'home');
    const env = { home, keys: join(fs.dir, 'keys') };
    expect(
      (await cli(env, ['user', 'add', 'alice', '--role', 'admin', '--password-stdin'], { input: 'pw-a' }))
        .exitCode,
    ).toBe(0);
    await fs.remount('ro');
    try {
      const add = await cliJson<Envelope>(
        env,
        ['user', 'add', 'bob', '--role', 'admin', '--password-stdin'],
        {
          input: 'pw-b',
        },
      );
      expect(add.exitCode).toBe(6);
      expect(add.json.error?.code).toBe('DISK_READ_ONLY');
      expect(add.json.error?.message).toMatch(/EROFS: read-only file system/);
      expect(add.json.error?.actions.join(' ')).toMatch(/remount it read-write/);
      const keygen = await cliJson<Envelope>(env, ['user', 'keygen', 'alice']);
      expect(keygen.json.error?.code).toBe('DISK_READ_ONLY');
      const up = await cliJson<Envelope>(env, ['lab', 'up', '--runtime', 'process', '--services', '1']);
      expect(up.exitCode).toBe(6);
      expect(up.json.error?.code).toBe('DISK_READ_ONLY');
      expect((await cli(env, ['user', 'list'])).exitCode).toBe(0);
      expect((await cli(env, ['audit', 'verify'])).exitCode).toBe(0);
    } finally {
      await fs.remount('rw');
    }
    expect(
      (await cli(env, ['user', 'add', 'bob', '--role', 'admin', '--password-stdin'], { input: 'pw-b' }))
        .exitCode,
    ).toBe(0);
  });
});
