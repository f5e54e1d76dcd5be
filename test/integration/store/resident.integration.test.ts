import { type ChildProcess, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { login } from '../../../src/client/login.js';
import { loadPrivateKeyFile, privateKeyPath } from '../../../src/crypto/keys.js';
import { edgeConnectFor } from '../../../src/kernel/edge-client.js';
import { closeClients, openClients } from '../../../src/load/run.js';
import { FileLabStore } from '../../../src/store/file-lab-store.js';
import { type StoreData, validateStoreData } from '../../../src/store/schema.js';
import { openUserAdmin } from '../../../src/users/admin.js';
import { cli } from '../../support/cli.js';
import { startLab, TEST_USERS } from '../../support/lab.js';

/**
 * The security service as the store's resident writer (store in memory, audit chain head and lock
 * kept between writes), against real writers in other processes: CLI commands (through its admin
 * API), and a process writing the files directly under the file lock, as the CLI does when it
 * finds no lab. Nothing acknowledged may be lost or fork the audit chain.
 */

const WRITER = fileURLToPath(new URL('./writer.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** writer.ts in its own process; resolves with its exit code and stderr. */
function runWriter(home: string, prefix: string, mode: 'count' | 'audit', n: number) {
  const child: ChildProcess = spawn(
    process.execPath,
    ['--import', 'tsx', WRITER, home, prefix, mode, String(n)],
    {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (c: string) => {
    stderr += c;
  });
  return new Promise<{ code: number | null; stderr: string }>((resolve) =>
    child.on('exit', (code) => resolve({ code, stderr })),
  );
}

async function storeOnDisk(home: string): Promise<StoreData> {
  const file = join(home, 'store.json');
  return validateStoreData(JSON.parse(await readFile(file, 'utf8')), file);
}

describe.sequential('the security service as the resident writer of a running lab', () => {
  it('loses no user written at once by two CLI processes, the admin API and a direct writer', async () => {
    await using lab = await startLab('trusted', 1);
    const admin = await openUserAdmin(lab.home);
    expect(admin.via).toBe('security-service');
    const cliChain = async (p: number): Promise<string[]> => {
      const out: string[] = [];
      for (let i = 0; i < 4; i++) {
        const r = await cli(lab, ['user', 'add', `c${p}-${i}`, '--role', 'analyst', '--password-stdin'], {
          input: 'pw\n',
        });
        out.push(`${r.exitCode} ${r.stderr}`);
      }
      return out;
    };
    const [c0, c1, direct, api] = await Promise.all([
      cliChain(0),
      cliChain(1),
      runWriter(lab.home, 'd', 'count', 25),
      Promise.all(
        Array.from({ length: 8 }, (_, i) => admin.addUser({ name: `a-${i}`, role: 'clerk', password: 'pw' })),
      ),
    ]);
    for (const r of [...c0, ...c1]) expect(r).toBe('0 ');
    expect(direct, direct.stderr).toMatchObject({ code: 0 });
    expect(api).toHaveLength(8);
    const want = [
      ...TEST_USERS.map((u) => u.name),
      ...[0, 1].flatMap((p) => [0, 1, 2, 3].map((i) => `c${p}-${i}`)),
      ...Array.from({ length: 25 }, (_, i) => `d-${i}`),
      ...Array.from({ length: 8 }, (_, i) => `a-${i}`),
    ].sort();
    expect(Object.keys((await storeOnDisk(lab.home)).users).sort()).toEqual(want);
    // The service sees what was written behind its back, and its next write keeps it.
    expect(await admin.getUser('d-24')).toMatchObject({ name: 'd-24' });
    await admin.removeUser('a-0');
    expect(Object.keys((await storeOnDisk(lab.home)).users).sort()).toEqual(want.filter((n) => n !== 'a-0'));
    expect(await new FileLabStore(lab.home).verifyAudit()).toMatchObject({ ok: true, problems: [] });
  });

  it('keeps the audit chain whole through concurrent logins and another process appending', async () => {
    await using lab = await startLab('trusted', 1);
    // Each from its own loopback address, as `lab load` does: the per-address login limits stay out of it.
    const clients = openClients(lab.state.gatewayUrl, 6, undefined, true, edgeConnectFor(lab.state));
    try {
      const keys = Object.fromEntries(
        await Promise.all(
          TEST_USERS.map(
            async (u) => [u.name, await loadPrivateKeyFile(privateKeyPath(lab.keys, u.name))] as const,
          ),
        ),
      );
      const before = (await new FileLabStore(lab.home).auditRecords()).length;
      const [, direct] = await Promise.all([
        Promise.all(
          clients.map(async (client, c) => {
            for (let i = 0; i < 3; i++) {
              const u = TEST_USERS[(c + i) % TEST_USERS.length]!;
              await login(lab.state, u.name, u.password, keys[u.name], client);
            }
          }),
        ),
        runWriter(lab.home, 'w', 'audit', 40),
      ]);
      expect(direct, direct.stderr).toMatchObject({ code: 0 });
      const store = new FileLabStore(lab.home);
      const records = (await store.auditRecords()).slice(before);
      expect(records.filter((r) => r.action === 'auth.verify' && r.outcome === 'allowed')).toHaveLength(18);
      expect(records.filter((r) => r.actor === 'w')).toHaveLength(40);
      const verdict = await store.verifyAudit();
      expect(verdict.problems).toEqual([]);
      expect(verdict.ok).toBe(true);
    } finally {
      await closeClients(clients);
    }
  });

  it('has every acknowledged admin write on disk when the service is killed (SIGKILL) in the middle', async () => {
    await using lab = await startLab('trusted', 1);
    const admin = await openUserAdmin(lab.home);
    const pid = lab.state.parts.find((p) => p.name === 'security')?.pid;
    expect(pid).toBeTypeOf('number');
    const acked: string[] = [];
    const writes = Array.from({ length: 30 }, (_, i) =>
      admin.addUser({ name: `k-${i}`, role: 'clerk', password: 'pw' }).then(
        (u) => void acked.push(u.name),
        () => undefined,
      ),
    );
    // Killed once some writes are acknowledged, while others are still in flight.
    while (acked.length < 3) await new Promise((r) => setTimeout(r, 5));
    process.kill(pid as number, 'SIGKILL');
    await Promise.all(writes);
    expect(acked.length).toBeGreaterThanOrEqual(3);
    const users = Object.keys((await storeOnDisk(lab.home)).users);
    for (const name of acked) expect(users).toContain(name);
    const store = new FileLabStore(lab.home);
    const added = (await store.auditRecords()).filter((r) => r.action === 'user.add' && r.outcome === 'ok');
    for (const name of acked) expect(added.map((r) => r.target)).toContain(name);
    expect(await store.verifyAudit()).toMatchObject({ ok: true });
  });
});
