import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, cliJson, repoRoot, tempLab } from '../../support/cli.js';

type Envelope<T> = { status: number; result: T; error: { code: string; message: string; exitCode: number } };
type User = {
  name: string;
  role: string;
  keys: { thumbprint: string; type: string }[];
  passwordScheme: string;
};

describe.sequential('trusted-ms user and role commands', () => {
  it('adds a user, makes its key (0600) and shows it, in text and JSON', async () => {
    await using lab = await tempLab();
    const add = await cli(lab, ['user', 'add', 'alice', '--role', 'analyst', '--password-stdin'], {
      input: 'pw-alice\n',
    });
    expect(add.stderr).toBe('');
    expect(add.exitCode).toBe(0);
    expect(add.stdout).toMatch(/Added alice with role analyst/);

    const keygen = await cliJson<Envelope<{ thumbprint: string; privateKeyFile: string; type: string }>>(
      lab,
      ['user', 'keygen', 'alice'],
    );
    expect(keygen.exitCode).toBe(0);
    expect(keygen.json.status).toBe(0);
    expect(keygen.json.result.type).toBe('ed25519');
    expect(keygen.json.result.thumbprint).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(keygen.json.result.privateKeyFile).toBe(join(lab.keys, 'alice.pem'));
    expect((await stat(keygen.json.result.privateKeyFile)).mode & 0o777).toBe(0o600);
    expect(JSON.stringify(keygen.json)).not.toMatch(/PRIVATE KEY/);

    const show = await cliJson<Envelope<User>>(lab, ['user', 'show', 'alice']);
    expect(show.json.result).toMatchObject({ name: 'alice', role: 'analyst', passwordScheme: 'scrypt' });
    expect(show.json.result.keys.map((k) => k.thumbprint)).toEqual([keygen.json.result.thumbprint]);
    expect(JSON.stringify(show.json)).not.toMatch(/\$scrypt\$/);

    const store = await readFile(join(lab.home, 'store.json'), 'utf8');
    expect(store).not.toMatch(/PRIVATE KEY/);
    expect(store).not.toMatch(/pw-alice/);
  });

  it('refuses a second keygen without --force, and --force unregisters the old key', async () => {
    await using lab = await tempLab();
    await cli(lab, ['user', 'add', 'bob', '--role', 'clerk', '--password-stdin'], { input: 'pw' });
    const first = await cliJson<Envelope<{ thumbprint: string }>>(lab, [
      'user',
      'keygen',
      'bob',
      '--type',
      'rsa',
    ]);
    expect(first.exitCode).toBe(0);
    const again = await cliJson<Envelope<unknown>>(lab, ['user', 'keygen', 'bob']);
    expect(again.exitCode).toBe(5);
    expect(again.json.error.code).toBe('KEY_EXISTS');
    const forced = await cliJson<Envelope<{ thumbprint: string; replaced: boolean }>>(lab, [
      'user',
      'keygen',
      'bob',
      '--force',
    ]);
    expect(forced.json.result.replaced).toBe(true);
    const show = await cliJson<Envelope<User>>(lab, ['user', 'show', 'bob']);
    expect(show.json.result.keys.map((k) => k.thumbprint)).toEqual([forced.json.result.thumbprint]);
  });

  it.each([
    [['user', 'add', 'dup', '--role', 'guest', '--password-stdin'], 'USER_EXISTS', 3],
    [['user', 'add', 'eve', '--role', 'superuser', '--password-stdin'], 'ROLE_NOT_FOUND', 3],
    [['user', 'add', 'Bad Name', '--role', 'guest', '--password-stdin'], 'INVALID_NAME', 2],
    [['user', 'show', 'nobody'], 'USER_NOT_FOUND', 3],
    [['user', 'remove', 'nobody'], 'USER_NOT_FOUND', 3],
    [['user', 'keygen', 'nobody'], 'USER_NOT_FOUND', 3],
    [['user', 'keygen', 'dup', '--type', 'rsa', '--bits', '1024'], 'INVALID_INPUT', 2],
    [['user', 'keygen', 'dup', '--type', 'dsa'], 'USAGE', 2],
    [['user', 'add', 'frank'], 'USAGE', 2],
    [['role', 'show', 'superuser'], 'ROLE_NOT_FOUND', 3],
    [['user', 'import', '--htpasswd', '/nonexistent/file', '--role', 'guest'], 'FILE_NOT_FOUND', 7],
    [['user', 'check-password', 'dup', '--password-stdin'], 'AUTH_FAILED', 4],
    [['user', 'check-password', 'nobody', '--password-stdin'], 'AUTH_FAILED', 4],
  ])('%j fails with %s, exit %i, one line and no stack', async (args, code, exitCode) => {
    await using lab = await tempLab();
    await cli(lab, ['user', 'add', 'dup', '--role', 'guest', '--password-stdin'], { input: 'right' });
    const text = await cli(lab, args, { input: 'wrong' });
    expect(text.exitCode).toBe(exitCode);
    expect(text.stderr).toMatch(new RegExp(`^Error \\[${code}\\]: `));
    expect(text.stderr).not.toMatch(/\s+at .+:\d+:\d+/);
    const json = await cliJson<Envelope<unknown>>(lab, args, { input: 'wrong' });
    expect(json.exitCode).toBe(exitCode);
    expect(json.json).toMatchObject({ status: exitCode, error: { code, exitCode } });
  });

  it('asks for --password-stdin when there is no terminal, instead of hanging', async () => {
    await using lab = await tempLab();
    const r = await cli(lab, ['user', 'add', 'gina', '--role', 'guest']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/PASSWORD_REQUIRED/);
    expect(r.stderr).toMatch(/--password-stdin/);
  });

  it('reports a corrupt store clearly and leaves the file as it was', async () => {
    await using lab = await tempLab();
    await cli(lab, ['user', 'add', 'ivan', '--role', 'guest', '--password-stdin'], { input: 'pw' });
    const file = join(lab.home, 'store.json');
    const garbage = '{"schemaVersion": 1, "users": {'; // cut short, as by a bad editor save
    await writeFile(file, garbage);
    for (const args of [
      ['user', 'list'],
      ['user', 'add', 'judy', '--role', 'guest', '--password-stdin'],
    ]) {
      const r = await cli(lab, args, { input: 'pw' });
      expect(r.exitCode).toBe(6);
      expect(r.stderr).toMatch(/^Error \[STORE_CORRUPT\]: .*store\.json/);
    }
    expect(await readFile(file, 'utf8')).toBe(garbage);
  });

  it('imports a real `htpasswd -B` file, verifies and upgrades its password at check time', async () => {
    await using lab = await tempLab();
    const imported = await cliJson<Envelope<{ imported: string[] }>>(lab, [
      'user',
      'import',
      '--htpasswd',
      join(repoRoot, 'fixtures/htpasswd/bcrypt.htpasswd'),
      '--role',
      'guest',
    ]);
    expect(imported.exitCode).toBe(0);
    expect(imported.json.result.imported).toContain('carol');
    expect((await cliJson<Envelope<User>>(lab, ['user', 'show', 'carol'])).json.result.passwordScheme).toBe(
      'bcrypt',
    );
    const wrong = await cli(lab, ['user', 'check-password', 'carol', '--password-stdin'], { input: 'nope' });
    expect(wrong.exitCode).toBe(4);
    const right = await cliJson<Envelope<{ upgraded: boolean }>>(
      lab,
      ['user', 'check-password', 'carol', '--password-stdin'],
      {
        input: 'carol-pass-1',
      },
    );
    expect(right.json.result.upgraded).toBe(true);
    expect((await cliJson<Envelope<User>>(lab, ['user', 'show', 'carol'])).json.result.passwordScheme).toBe(
      'scrypt',
    );
    const after = await cliJson<Envelope<{ upgraded: boolean }>>(
      lab,
      ['user', 'check-password', 'carol', '--password-stdin'],
      {
        input: 'carol-pass-1',
      },
    );
    expect(after.json.result.upgraded).toBe(false);
  });

  it('refuses an htpasswd file with other formats, naming the lines, and imports nothing', async () => {
    await using lab = await tempLab();
    const r = await cli(lab, [
      'user',
      'import',
      '--htpasswd',
      join(repoRoot, 'fixtures/htpasswd/mixed.htpasswd'),
      '--role',
      'guest',
    ]);
    expect(r.exitCode).toBe(7);
    expect(r.stderr).toMatch(/HTPASSWD_UNSUPPORTED_FORMAT/);
    expect(r.stderr).toMatch(/line \d/);
    expect((await cliJson<Envelope<User[]>>(lab, ['user', 'list'])).json.result).toEqual([]);
  });

  it('lists the default roles and shows one', async () => {
    await using lab = await tempLab();
    const list = await cliJson<Envelope<{ name: string }[]>>(lab, ['role', 'list']);
    expect(list.json.result.map((r) => r.name).sort()).toEqual(['admin', 'analyst', 'clerk', 'guest', 'hr']);
    const show = await cli(lab, ['role', 'show', 'analyst']);
    expect(show.exitCode).toBe(0);
    expect(show.stdout).toMatch(/orders\s*│\s*yes\s*│\s*yes\s*│\s*-/);
  });

  it('loses no user when 50 `user add` processes run at once', async () => {
    await using lab = await tempLab();
    // One wave: the writes race as hard as 50 processes on 2 cores can make them (a second wave ran
    // the same race again and cost CI 45 s).
    const names = Array.from({ length: 50 }, (_, i) => `u${String(i).padStart(3, '0')}`);
    const results = await Promise.all(
      names.map((n) =>
        // 50 Node processes starting at once on 2 cores: give each far more than its ~1 s of CPU.
        cli(lab, ['user', 'add', n, '--role', 'guest', '--password-stdin'], {
          input: `pw-${n}`,
          timeoutMs: 200_000,
        }),
      ),
    );
    expect(results.filter((r) => r.exitCode !== 0).map((r) => r.stderr)).toEqual([]);
    const list = await cliJson<Envelope<User[]>>(lab, ['user', 'list']);
    expect(list.json.result.map((u) => u.name).sort()).toEqual(names);
  }, 300_000);
});

describe('trusted-ms --help', () => {
  it('gives every command a summary and at least one example', async () => {
    const manifest = JSON.parse(await readFile(join(repoRoot, 'oclif.manifest.json'), 'utf8')) as {
      commands: Record<string, { summary?: string; examples?: string[] }>;
    };
    const ids = Object.keys(manifest.commands);
    expect(ids.length).toBeGreaterThanOrEqual(9);
    for (const id of ids) {
      expect(manifest.commands[id]?.summary, id).toBeTruthy();
      expect(manifest.commands[id]?.examples?.length, id).toBeGreaterThan(0);
    }
  });
});
