import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { stateFile } from '../../../src/kernel/lab-state.js';
import { createLabCa } from '../../../src/pki/ca.js';
import { cli, cliJson } from '../../support/cli.js';
import { startLab } from '../../support/lab.js';

/*
 * edge:tls as a user meets it: the trusted gateway answers HTTPS only, curl with the lab CA
 * printed by `lab up` reaches it (the README's example), and the CLI given another CA refuses the
 * gateway with EDGE_CERTIFICATE_UNTRUSTED (exit 8): one line and what to do, no stack.
 */
describe('TLS at the edge, from the CLI and curl (trusted process lab)', () => {
  it('curl --cacert reaches it, the CLI logs in and calls; with another CA it is EDGE_CERTIFICATE_UNTRUSTED', async () => {
    await using lab = await startLab('trusted', 1);
    const { gatewayUrl, caFile } = lab.state;
    expect(gatewayUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(caFile).toBe(join(lab.home, 'lab', 'ca', 'ca.pem'));

    const curl = await execa('curl', ['-sS', '--cacert', caFile as string, `${gatewayUrl}/healthz`]);
    expect(JSON.parse(curl.stdout)).toMatchObject({ ok: true, defences: { edge: 'tls' } });
    const noCa = await execa('curl', ['-sS', `${gatewayUrl}/healthz`], { reject: false });
    expect(noCa.exitCode).not.toBe(0);

    const login = await cli(lab, ['user', 'login', 'alice', '--password-stdin'], { input: 'alice-pw' });
    expect(login.exitCode).toBe(0);
    const service = lab.state.parts.find((p) => p.kind === 'service')?.name as string;
    const call = await cli(lab, ['call', service, '/healthz']);
    expect(call.exitCode, call.stderr).toBe(0);

    // The same lab, the CLI handed another lab's CA: the gateway cannot prove itself.
    const other = join(lab.home, 'other-ca.pem');
    await writeFile(other, (await createLabCa({ labId: 'beefcafe' })).certPem);
    const state = JSON.parse(await readFile(stateFile(lab.home), 'utf8'));
    await writeFile(stateFile(lab.home), JSON.stringify({ ...state, caFile: other }));
    const refused = await cli(lab, ['user', 'login', 'alice', '--password-stdin'], { input: 'alice-pw' });
    expect(refused.exitCode).toBe(8);
    expect(refused.stderr).toMatch(
      /^Error \[EDGE_CERTIFICATE_UNTRUSTED\]: the gateway at https:\/\/127\.0\.0\.1:\d+ did not prove itself with the lab CA/m,
    );
    expect(refused.stderr).not.toMatch(/\n\s+at /);
    const json = await cliJson<{ error: { code: string; actions: string[] } }>(lab, [
      'call',
      'catalog',
      '/db/catalog/records',
    ]);
    expect(json.exitCode).toBe(8);
    expect(json.json.error.code).toBe('EDGE_CERTIFICATE_UNTRUSTED');
    expect(json.json.error.actions.join(' ')).toMatch(/curl --cacert/);
    await writeFile(stateFile(lab.home), JSON.stringify(state));
  }, 120_000);
});
