import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labIssuer } from '../../../src/protocol/issuer.js';
import { cli, repoRoot } from '../../support/cli.js';
import { type RunningLab, startLab } from '../../support/lab.js';

/**
 * docs/clients/login.sh, the portable client (POSIX sh, curl, OpenSSL 3; run by /bin/sh, which is
 * dash on Debian), against a real trusted process lab: the whole login and one call with a proof,
 * with a key made by openssl and registered with `user key add`. And the checks that make it a
 * client to trust: it signs nothing for another audience, and a wrong password fails with the code.
 */

const SCRIPT = join(repoRoot, 'docs', 'clients', 'login.sh');
const PW = 'sh-client-pw';
const CALL = '/svc/accounts/db/accounts/records';
let dir: string;
let lab: RunningLab;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tms-login-sh-'));
  for (const [name, alg] of [
    ['ed', ['-algorithm', 'ed25519']],
    ['rsa', ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048']],
  ] as const) {
    execFileSync('openssl', ['genpkey', ...alg, '-out', join(dir, `${name}.pem`)], { stdio: 'pipe' });
    execFileSync('openssl', [
      'pkey',
      '-in',
      join(dir, `${name}.pem`),
      '-pubout',
      '-out',
      join(dir, `${name}.pub`),
    ]);
  }
  lab = await startLab('trusted', 2);
  expect(
    (await cli(lab, ['user', 'add', 'shell', '--role', 'admin', '--password-stdin'], { input: PW })).exitCode,
  ).toBe(0);
  for (const k of ['ed', 'rsa']) {
    const r = await cli(lab, ['user', 'key', 'add', 'shell', '--public-key', join(dir, `${k}.pub`)]);
    expect(r.exitCode, r.stderr).toBe(0);
  }
});
afterAll(async () => {
  await lab?.[Symbol.asyncDispose]();
  await rm(dir, { recursive: true, force: true });
});

/** edge:tls: curl checks the gateway against the lab CA */
const cacert = (): string[] => (lab.state.caFile ? ['--cacert', lab.state.caFile] : []);

const runScript = (args: string[], env: Record<string, string>, input = '') =>
  execa('/bin/sh', [SCRIPT, lab.state.gatewayUrl, 'shell', ...args], {
    reject: false,
    input,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      ...(lab.state.caFile ? { TMS_CACERT: lab.state.caFile } : {}),
      ...env,
    },
    extendEnv: false,
    timeout: 60_000,
  });

describe('docs/clients/login.sh', () => {
  it.each(['ed', 'rsa'])('logs in with an openssl %s key and calls a service with a proof', async (k) => {
    const session = join(dir, `session-${k}`);
    const r = await runScript(
      [join(dir, `${k}.pem`), CALL],
      {
        TMS_AUDIENCE: labIssuer(lab.state.labId),
        TMS_SESSION: session,
      },
      `${PW}\n`,
    );
    expect(r.exitCode, `${r.stderr}`).toBe(0);
    expect(r.stderr).toMatch(/^logged in as shell until \d+ \(key [A-Za-z0-9_-]{43}\)$/m);
    expect(JSON.parse(String(r.stdout))).toHaveProperty('records');
    expect(((await stat(session)).mode & 0o777).toString(8)).toBe('600');
    expect(await readFile(session, 'utf8')).toMatch(/^TICKET=.+\nSESSION_KEY=[0-9a-f]{64}\nJTI=/);
  });

  it('refuses to sign a challenge for another audience', async () => {
    const r = await runScript([join(dir, 'ed.pem'), CALL], {
      TMS_AUDIENCE: 'trusted-ms://other-lab/security',
      TMS_PASSWORD: PW,
    });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/refusing to sign it/);
  });

  it('fails with the server code on a wrong password, and without TMS_AUDIENCE before any request', async () => {
    const wrong = await runScript([join(dir, 'ed.pem')], {
      TMS_AUDIENCE: labIssuer(lab.state.labId),
      TMS_PASSWORD: 'nope',
    });
    expect(wrong.exitCode).toBe(1);
    expect(wrong.stderr).toMatch(/401 AUTH_FAILED/);
    const noAudience = await runScript([join(dir, 'ed.pem')], { TMS_PASSWORD: PW });
    expect(noAudience.exitCode).toBe(1);
    expect(noAudience.stderr).toMatch(/TMS_AUDIENCE/);
  });

  it('a proof made with another session key is refused by the gateway (the script is what makes it pass)', async () => {
    const session = join(dir, 'session-ed');
    const s = Object.fromEntries(
      (await readFile(session, 'utf8'))
        .trim()
        .split('\n')
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    const res = await execa('curl', [
      '-sS',
      ...cacert(),
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '-H',
      `authorization: Bearer ${s.TICKET}`,
      '-H',
      `tms-proof: v1.${Date.now()}.AAAAAAAAAAAAAAAAAAAAAA.${'A'.repeat(43)}`,
      `${lab.state.gatewayUrl}${CALL}`,
    ]);
    expect(res.stdout).toBe('401');
  });

  it('the gateway answers the login at /v1/auth/... (canonical) and at the /auth/... alias alike', async () => {
    for (const path of ['/v1/auth/verify', '/auth/verify']) {
      const res = await execa('curl', [
        '-sS',
        ...cacert(),
        '-H',
        'content-type: application/json',
        '--data-binary',
        '{"id":"AAAAAAAAAAAAAAAAAAAAAA","signature":"AAAA"}',
        `${lab.state.gatewayUrl}${path}`,
      ]);
      expect(JSON.parse(res.stdout)).toMatchObject({ code: 'CHALLENGE_UNKNOWN' });
    }
  });

  it('the running gateway serves its OpenAPI document at /openapi.json, the committed one for its posture', async () => {
    const res = await execa('curl', ['-sS', ...cacert(), `${lab.state.gatewayUrl}/openapi.json`]);
    const served = JSON.parse(res.stdout) as { openapi: string; paths: Record<string, unknown> };
    const committed = JSON.parse(await readFile(join(repoRoot, 'docs', 'openapi', 'gateway.json'), 'utf8'));
    expect(served.openapi).toBe('3.1.0');
    // The committed document is the union of the postures; a trusted gateway has no /auth/basic.
    const { '/auth/basic': _noneOnly, ...trustedPaths } = committed.paths;
    expect(served.paths).toEqual(trustedPaths);
  });
});
