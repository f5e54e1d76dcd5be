import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePublicKeyInput } from '../../../src/crypto/public-key-input.js';
import { jwkThumbprint } from '../../../src/crypto/thumbprint.js';
import { cli, cliJson, tempLab } from '../../support/cli.js';
import { type RunningLab, startLab } from '../../support/lab.js';

/**
 * Issue 19, "keys the user already has", through the real CLI: keys made by ssh-keygen and openssl
 * (never by our code) registered with `user key add`, used by `user login --key` (OpenSSH, plain and
 * encrypted) and `user login --agent` (a real ssh-agent started here), then `call` with the session,
 * against a real trusted process lab; and `user key remove` revoking exactly the tickets of its key.
 */

const PW = 'dana-pw-123';
const PASSPHRASE = 'correct horse battery';
let dir: string;
const at = (name: string) => join(dir, name);
const run = (cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env) =>
  execFileSync(cmd, args, { cwd: dir, stdio: 'pipe', env });
const thumbprintOf = async (pub: string) =>
  jwkThumbprint(parsePublicKeyInput(await readFile(at(pub), 'utf8')).key);
const NO_AGENT = { SSH_AUTH_SOCK: '' };

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tms-interop-keys-'));
  run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'dana@laptop', '-f', 'laptop']);
  run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', PASSPHRASE, '-f', 'locked']);
  run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', 'token']);
  run('ssh-keygen', ['-q', '-t', 'rsa', '-b', '2048', '-N', '', '-f', 'rsa']);
  run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', 'stranger']);
  run('openssl', ['genpkey', '-algorithm', 'ed25519', '-out', 'o.pem']);
  run('openssl', ['pkey', '-in', 'o.pem', '-pubout', '-out', 'o.pub.pem']);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('user key add / list / remove with the lab down (the store, under its lock)', () => {
  it('registers several keys in each form, lists them, removes one, and refuses bad input with codes', async () => {
    await using lab = await tempLab();
    expect(
      (await cli(lab, ['user', 'add', 'dana', '--role', 'analyst', '--password-stdin'], { input: PW }))
        .exitCode,
    ).toBe(0);
    const ssh = await cliJson<{ result: { thumbprint: string; format: string } }>(lab, [
      'user',
      'key',
      'add',
      'dana',
      '--public-key',
      at('laptop.pub'),
    ]);
    expect(ssh.exitCode).toBe(0);
    expect(ssh.json.result).toMatchObject({
      thumbprint: await thumbprintOf('laptop.pub'),
      format: 'openssh',
    });
    const pem = await cliJson<{ result: { thumbprint: string; keys: string[] } }>(
      lab,
      ['user', 'key', 'add', 'dana', '--public-key', '-'],
      {
        input: await readFile(at('o.pub.pem'), 'utf8'),
      },
    );
    expect(pem.json.result.keys).toHaveLength(2);
    const again = await cliJson<{ error: { code: string } }>(lab, [
      'user',
      'key',
      'add',
      'dana',
      '--public-key',
      at('laptop.pub'),
    ]);
    expect(again.json.error.code).toBe('KEY_EXISTS');

    const refused: [string, string[], string | undefined, string, number][] = [
      ['a private key', ['--public-key', at('laptop')], undefined, 'KEY_INVALID', 5],
      ['a comment-only line', ['--public-key', '-'], '# my laptop\n', 'KEY_INVALID', 5],
      ['a missing file', ['--public-key', at('nope.pub')], undefined, 'KEY_NOT_FOUND', 5],
      ['a folder', ['--public-key', dir], undefined, 'KEY_UNREADABLE', 5],
    ];
    for (const [, flags, input, code, exit] of refused) {
      const r = await cliJson<{ error: { code: string } }>(
        lab,
        ['user', 'key', 'add', 'dana', ...flags],
        input === undefined ? {} : { input },
      );
      expect([r.json.error.code, r.exitCode]).toEqual([code, exit]);
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack
    }

    const list = await cliJson<{ result: { keys: { thumbprint: string }[] } }>(lab, [
      'user',
      'key',
      'list',
      'dana',
    ]);
    expect(list.json.result.keys.map((k) => k.thumbprint)).toEqual([
      ssh.json.result.thumbprint,
      pem.json.result.thumbprint,
    ]);
    const gone = await cli(lab, ['user', 'key', 'remove', 'dana', 'x'.repeat(43)]);
    expect(gone.exitCode).toBe(5);
    expect(gone.stderr).toContain(`registered: ${ssh.json.result.thumbprint}, ${pem.json.result.thumbprint}`);
    // A thumbprint is base64url: one in 64 starts with '-', which ends the options only after `--`
    // (so --json goes before it).
    const removedRun = await cli(lab, [
      'user',
      'key',
      'remove',
      '--json',
      'dana',
      '--',
      ssh.json.result.thumbprint,
    ]);
    const removed = { json: JSON.parse(removedRun.stdout) as { result: { keys: string[] } } };
    expect(removed.json.result.keys).toEqual([pem.json.result.thumbprint]);
    const store = JSON.parse(await readFile(join(lab.home, 'store.json'), 'utf8'));
    expect(store.schemaVersion).toBe(2);
    expect(Object.keys(store.revocations.users.dana.keys)).toEqual([ssh.json.result.thumbprint]);
    // No private key was written anywhere by any of it.
    expect(await stat(lab.keys).catch(() => undefined)).toBeUndefined();
  });
});

describe('logging in with keys the user already has, on a trusted process lab', () => {
  let lab: RunningLab;
  let agent: ChildProcess | undefined;
  const sock = () => at('agent.sock');
  const agentEnv = () => ({ SSH_AUTH_SOCK: sock() });

  beforeAll(async () => {
    lab = await startLab('trusted', 2);
    expect(
      (await cli(lab, ['user', 'add', 'dana', '--role', 'admin', '--password-stdin'], { input: PW }))
        .exitCode,
    ).toBe(0);
    for (const pub of ['laptop.pub', 'locked.pub', 'token.pub', 'rsa.pub', 'o.pub.pem']) {
      const r = await cli(lab, ['user', 'key', 'add', 'dana', '--public-key', at(pub)]);
      expect(r.exitCode, r.stderr).toBe(0);
    }
    agent = spawn('ssh-agent', ['-D', '-a', sock()], { stdio: 'ignore' });
    for (let i = 0; i < 100 && !(await stat(sock()).catch(() => undefined)); i++) await sleep(50);
  });
  afterAll(async () => {
    agent?.kill();
    await lab?.[Symbol.asyncDispose]();
  });

  const callAccounts = () =>
    cli(lab, ['call', 'accounts', '/db/accounts/records', '--as', 'dana'], { env: NO_AGENT });
  const login = (flags: string[], input = PW, env: Record<string, string> = NO_AGENT) =>
    cliJson<{ result: { thumbprint: string }; error: { code: string; message: string; actions: string[] } }>(
      lab,
      ['user', 'login', 'dana', '--password-stdin', ...flags],
      { input, env },
    );

  it('an unencrypted OpenSSH key (ssh-keygen) logs in with --key, and call works with the session', async () => {
    const r = await login(['--key', at('laptop')]);
    expect(r.exitCode, JSON.stringify(r.json)).toBe(0);
    expect(r.json.result.thumbprint).toBe(await thumbprintOf('laptop.pub'));
    const c = await callAccounts();
    expect(c.exitCode, c.stderr).toBe(0);
  });

  it('an encrypted OpenSSH key: refused without its passphrase (naming the flag), in with it', async () => {
    const none = await login(['--key', at('locked')]);
    expect([none.exitCode, none.json.error.code]).toEqual([5, 'KEY_PASSPHRASE_REQUIRED']);
    expect(none.json.error.actions.join(' ')).toMatch(/--passphrase-stdin/);
    const wrong = await login(['--key', at('locked'), '--passphrase-stdin'], `${PW}\nnot it\n`);
    expect(wrong.json.error.code).toBe('KEY_PASSPHRASE_WRONG');
    const ok = await login(['--key', at('locked'), '--passphrase-stdin'], `${PW}\n${PASSPHRASE}\n`);
    expect(ok.exitCode, JSON.stringify(ok.json)).toBe(0);
    expect(ok.json.result.thumbprint).toBe(await thumbprintOf('locked.pub'));
    expect((await callAccounts()).exitCode).toBe(0);
  });

  it('the OpenSSL-made PEM key logs in as well: each registered key is usable', async () => {
    const r = await login(['--key', at('o.pem')]);
    expect(r.json.result.thumbprint).toBe(await thumbprintOf('o.pub.pem'));
  });

  it('--agent signs through a real ssh-agent; no private key file is read or written', async () => {
    run('ssh-add', ['-q', at('token')], { ...process.env, SSH_AUTH_SOCK: sock() });
    const r = await login(['--agent'], PW, agentEnv());
    expect(r.exitCode, JSON.stringify(r.json)).toBe(0);
    expect(r.json.result.thumbprint).toBe(await thumbprintOf('token.pub'));
    expect((await callAccounts()).exitCode).toBe(0);
    expect(await stat(join(lab.keys, 'dana.pem')).catch(() => undefined)).toBeUndefined();
  });

  it('--agent without an agent, or with only an RSA key in it, says what to do', async () => {
    const none = await login(['--agent']);
    expect(none.json.error.code).toBe('AGENT_UNAVAILABLE');
    expect(none.json.error.message).toMatch(/SSH_AUTH_SOCK/);
    run('ssh-add', ['-q', '-D'], { ...process.env, SSH_AUTH_SOCK: sock() });
    run('ssh-add', ['-q', at('rsa')], { ...process.env, SSH_AUTH_SOCK: sock() });
    const rsa = await login(['--agent'], PW, agentEnv());
    expect(rsa.json.error.code).toBe('KEY_TYPE_UNSUPPORTED');
    expect(rsa.json.error.message).toMatch(/PKCS#1 v1\.5/);
    run('ssh-add', ['-q', '-D'], { ...process.env, SSH_AUTH_SOCK: sock() });
    run('ssh-add', ['-q', at('stranger')], { ...process.env, SSH_AUTH_SOCK: sock() });
    const stranger = await login(['--agent'], PW, agentEnv());
    expect(stranger.json.error.code).toBe('KEY_NOT_FOUND');
    expect(stranger.json.error.message).toContain(await thumbprintOf('token.pub'));
  });

  it("a key of another user, and one nobody registered: SIGNATURE_INVALID saying which, with dana's keys", async () => {
    const alices = await login(['--key', join(lab.keys, 'alice.pem')]);
    expect(alices.json.error.code).toBe('SIGNATURE_INVALID');
    expect(alices.json.error.message).toMatch(/registered for alice, not for dana/);
    const stranger = await login(['--key', at('stranger')]);
    expect(stranger.json.error.code).toBe('SIGNATURE_INVALID');
    expect(stranger.json.error.message).toMatch(/is not registered for dana; registered: /);
    expect(stranger.json.error.message).toContain(await thumbprintOf('laptop.pub'));
    const pub = await login(['--key', at('laptop.pub')]);
    expect(pub.json.error.code).toBe('KEY_INVALID');
    expect(pub.json.error.actions.join(' ')).toContain(at('laptop'));
  });

  it('user key remove (through the security service) revokes the tickets of that key only', async () => {
    expect((await login(['--key', at('laptop')])).exitCode).toBe(0);
    expect((await callAccounts()).exitCode).toBe(0);
    const session = await readFile(join(lab.home, 'sessions', 'dana.json'), 'utf8');
    const removed = await cli(lab, ['user', 'key', 'remove', 'dana', '--', await thumbprintOf('laptop.pub')]);
    expect(removed.exitCode, removed.stderr).toBe(0);
    const refused = await cliJson<{ error: { code: string } }>(
      lab,
      ['call', 'accounts', '/db/accounts/records', '--as', 'dana'],
      { env: NO_AGENT },
    );
    expect(refused.json.error.code).toBe('TICKET_REVOKED');
    // The removed key no longer logs in; another of dana's keys does, and its ticket works.
    expect((await login(['--key', at('laptop')])).json.error.code).toBe('SIGNATURE_INVALID');
    expect((await login(['--key', at('o.pem')])).exitCode).toBe(0);
    expect((await callAccounts()).exitCode).toBe(0);
    expect(session).toContain('"thumbprint"');
  });
});
