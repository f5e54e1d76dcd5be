import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import type { Session } from '../../../src/client/session.js';
import { labUp } from '../../../src/lab/up.js';
import { cli } from '../../support/cli.js';
import { startLab, TEST_USERS } from '../../support/lab.js';

/**
 * Secrets hygiene, from evidence: a real lab is driven through good and failed logins, calls,
 * refused calls and a stolen ticket; then every log file of the lab, the audit log and every CLI
 * output are searched for every secret in play. None may appear. Secret files must be 0600.
 */

const WRONG_PASSWORD = 'Wr0ng-pa55word-for-the-grep';

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

/** The base64 body of a PEM file, and each of its lines (a partial leak counts too). */
function pemSecrets(pem: string): string[] {
  const lines = pem.split('\n').filter((l) => l !== '' && !l.startsWith('-----'));
  return [lines.join(''), ...lines.filter((l) => l.length >= 24)];
}

describe('secrets hygiene of a running lab', () => {
  it('no password, private key, ticket, session key or lab token in any log line or CLI output', async () => {
    await using lab = await startLab('trusted', 2);
    const env = { home: lab.home, keys: lab.keys };
    const outputs: { what: string; text: string }[] = [];
    const run = async (args: string[], input?: string) => {
      const r = await cli(env, args, input === undefined ? {} : { input });
      outputs.push({ what: args.join(' '), text: `${r.stdout}\n${r.stderr}` });
      return r;
    };

    // good logins, a wrong password, the wrong key, a lock-out
    expect((await run(['user', 'login', 'alice', '--password-stdin'], 'alice-pw')).exitCode).toBe(0);
    expect((await run(['user', 'login', 'bob', '--password-stdin', '--json'], 'bob-pw')).exitCode).toBe(0);
    expect((await run(['user', 'login', 'bob', '--password-stdin'], WRONG_PASSWORD)).exitCode).not.toBe(0);
    const wrongKey = await run(
      ['user', 'login', 'erin', '--password-stdin', '--key', join(lab.keys, 'alice.pem')],
      'erin-pw',
    );
    expect(wrongKey.exitCode).not.toBe(0);
    for (let i = 0; i < 6; i++)
      await run(['user', 'login', 'erin', '--password-stdin', '--json'], `${WRONG_PASSWORD}${i}`);
    // calls: allowed, refused by role, and with DEBUG set (stack traces must not carry secrets either)
    expect((await run(['call', 'accounts', '/db/accounts/records', '--as', 'alice'])).exitCode).toBe(0);
    expect(
      (await run(['call', 'accounts', '/db/accounts/records', '--as', 'alice', '--json'])).exitCode,
    ).toBe(0);
    expect((await run(['call', 'customers', '/db/customers/records', '--as', 'bob'])).exitCode).not.toBe(0);
    await run(['call', 'nowhere', '/x', '--as', 'bob', '--json']);
    // a stolen ticket replayed without its proof, straight at the gateway
    const alice = JSON.parse(await readFile(join(lab.home, 'sessions', 'alice.json'), 'utf8')) as Session;
    const stolen = await request(`${lab.state.gatewayUrl}/svc/accounts/db/accounts/records`, {
      headers: { authorization: `Bearer ${alice.ticket}` },
    });
    expect(stolen.statusCode).toBe(401);
    await stolen.body.dump();
    for (const args of [
      ['lab', 'status'],
      ['lab', 'status', '--json'],
      ['lab', 'logs'],
      ['user', 'show', 'alice', '--json'],
      ['user', 'list'],
      ['audit', 'tail', '-n', '200', '--json'],
      ['audit', 'verify'],
    ]) {
      await run(args);
    }

    // every secret in play
    const labDir = join(lab.home, 'lab');
    const secrets: { what: string; value: string }[] = [
      ...TEST_USERS.map((u) => ({ what: `password of ${u.name}`, value: u.password })),
      { what: 'a wrong password', value: WRONG_PASSWORD },
      { what: 'lab token', value: (await readFile(join(labDir, 'lab-token'), 'utf8')).trim() },
      { what: 'seal key', value: (await readFile(join(labDir, 'seal-key'), 'utf8')).trim() },
      ...pemSecrets(await readFile(join(labDir, 'ticket-key.pem'), 'utf8')).map((value) => ({
        what: 'ticket key',
        value,
      })),
      ...pemSecrets(await readFile(join(labDir, 'ca', 'ca-key.pem'), 'utf8')).map((value) => ({
        what: 'CA key',
        value,
      })),
    ];
    for (const u of TEST_USERS) {
      for (const value of pemSecrets(await readFile(join(lab.keys, `${u.name}.pem`), 'utf8'))) {
        secrets.push({ what: `private key of ${u.name}`, value });
      }
    }
    for (const name of ['alice', 'bob']) {
      const s = JSON.parse(await readFile(join(lab.home, 'sessions', `${name}.json`), 'utf8')) as Session;
      const [, payload, signature] = (s.ticket as string).split('.');
      secrets.push({ what: `ticket of ${name}`, value: s.ticket as string });
      secrets.push({ what: `ticket signature of ${name}`, value: `${payload}.${signature}` });
      secrets.push({ what: `session key of ${name}`, value: s.sessionKey as string });
    }
    expect(secrets.every((s) => s.value.length >= 6)).toBe(true);

    const logFiles = await filesUnder(join(labDir, 'logs'));
    expect(logFiles.length).toBeGreaterThanOrEqual(4);
    const sources = [
      ...(await Promise.all(logFiles.map(async (f) => ({ what: f, text: await readFile(f, 'utf8') })))),
      { what: 'audit.jsonl', text: await readFile(join(lab.home, 'audit.jsonl'), 'utf8') },
      ...outputs,
    ];
    // The logs did record the refusals (the search is over real content, not empty files).
    expect(sources.some((s) => s.text.includes('PROOF_INVALID'))).toBe(true);
    expect(sources.some((s) => s.text.includes('AUTH_FAILED'))).toBe(true);
    const leaks = sources.flatMap((src) =>
      secrets.filter((s) => src.text.includes(s.value)).map((s) => `${s.what} in ${src.what}`),
    );
    expect(leaks).toEqual([]);

    // secret files: owner only
    const secretFiles = [
      join(labDir, 'lab-token'),
      join(labDir, 'seal-key'),
      join(labDir, 'ticket-key.pem'),
      join(labDir, 'ca', 'ca-key.pem'),
      join(lab.home, 'store.json'),
      join(lab.home, 'audit.jsonl'),
      ...TEST_USERS.map((u) => join(lab.keys, `${u.name}.pem`)),
      ...(await readdir(join(lab.home, 'sessions'))).map((f) => join(lab.home, 'sessions', f)),
      ...(await readdir(join(labDir, 'parts'))).map((f) => join(labDir, 'parts', f)),
    ];
    const modes = await Promise.all(
      secretFiles.map(
        async (f) => `${f.slice(lab.home.length - 4)} ${((await stat(f)).mode & 0o777).toString(8)}`,
      ),
    );
    expect(modes.filter((m) => !m.endsWith(' 600'))).toEqual([]);
    expect(((await stat(lab.home)).mode & 0o077).toString(8)).toBe('0');
  }, 300_000);

  it('lab up refuses a lab home that group or others can write (LAB_HOME_UNSAFE), in code and on the CLI', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tms-unsafe-'));
    try {
      for (const mode of [0o777, 0o775, 0o757]) {
        const home = join(dir, `home-${mode.toString(8)}`);
        await mkdir(home);
        await chmod(home, mode);
        await expect(labUp({ home, posture: 'none', services: 1 })).rejects.toMatchObject({
          code: 'LAB_HOME_UNSAFE',
        });
        const r = await cli({ home, keys: join(dir, 'keys') }, [
          'lab',
          'up',
          '--posture',
          'none',
          '--services',
          '1',
          '--json',
        ]);
        expect(r.exitCode).toBe(9);
        expect(JSON.parse(r.stdout)).toMatchObject({ error: { code: 'LAB_HOME_UNSAFE' } });
        // nothing was started or written there
        expect(await readdir(home)).toEqual([]);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
