import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defencesFor } from '../../../src/defences/presets.js';
import type { ServicePartConfig } from '../../../src/kernel/part-config.js';
import { labTopology } from '../../../src/kernel/topology.js';
import { packageRoot } from '../../../src/paths.js';

const run = promisify(execFile);
const ROOT = packageRoot();
const HOST = '127.0.0.1';

/** Runs the bundle script on the kit's TypeScript source (no dependency on a fresh `dist/`). */
async function bundle(outfile: string): Promise<Buffer> {
  await run(
    process.execPath,
    ['scripts/bundle-service.mjs', '--entry', 'src/services/sample/main.ts', '--outfile', outfile],
    { cwd: ROOT, timeout: 60_000 },
  );
  return readFile(outfile);
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function get(url: string, headers: Record<string, string> = {}) {
  const res = await request(url, { headers, headersTimeout: 2000, bodyTimeout: 2000 });
  return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
}

describe('the bundled sample service (service.mjs) as a real process', () => {
  let dir: string;
  let appDir: string;
  let child: ChildProcess;
  let base: string;
  let stdout = '';

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tms-sample-'));
    appDir = join(dir, 'app');
    const first = await bundle(join(appDir, 'service.mjs'));
    const second = await bundle(join(dir, 'again', 'service.mjs'));
    expect(createHash('sha256').update(second).digest('hex')).toBe(
      createHash('sha256').update(first).digest('hex'),
    );

    const services = labTopology().services;
    const orders = services.find((s) => s.name === 'orders');
    const callers = services.filter((s) => s.calls.includes('orders')).map((s) => s.name);
    await writeFile(join(appDir, 'service.json'), JSON.stringify({ ...orders, callers }));
    await writeFile(join(dir, 'lab-token'), 'not-used-in-none\n', { mode: 0o600 });
    const port = await freePort();
    const config: ServicePartConfig = {
      kind: 'service',
      labId: 'lab-bundle',
      posture: 'none',
      defences: defencesFor('none'),
      part: 'orders',
      host: HOST,
      port,
      securityUrl: `http://${HOST}:9`,
      labTokenFile: join(dir, 'lab-token'),
      appDir,
      peers: {},
    };
    await writeFile(join(dir, 'orders.json'), JSON.stringify(config));
    base = `http://${HOST}:${port}`;
    child = spawn(process.execPath, [join(appDir, 'service.mjs')], {
      env: { ...process.env, TMS_PART_CONFIG: join(dir, 'orders.json') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.on('data', (c: Buffer) => {
      stdout += c.toString('utf8');
    });
    child.stderr?.on('data', (c: Buffer) => {
      stdout += c.toString('utf8');
    });
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        if ((await get(`${base}/healthz`)).status === 200) break;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline || child.exitCode !== null)
        throw new Error(`service did not start:\n${stdout}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  afterAll(async () => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('serves records to the principal the gateway names, and refuses a request without one', async () => {
    const headers = {
      'x-tms-user': 'alice',
      'x-tms-role': 'clerk',
      'x-tms-perms': JSON.stringify({ orders: ['read'] }),
    };
    const ok = await get(`${base}/db/orders/records/ord-1`, headers);
    expect(ok.status).toBe(200);
    expect(ok.body.record).toMatchObject({ id: 'ord-1', customer: 'cust-1' });
    const refused = await get(`${base}/db/orders/records/ord-1`);
    expect([refused.status, refused.body.code]).toEqual([401, 'TICKET_MISSING']);
    expect(stdout).toMatch(/orders \(none\) listening on http:\/\/127\.0\.0\.1:\d+/);
    expect(stdout).toMatch(/orders: refused GET \/db\/orders\/records\/ord-1: TICKET_MISSING/);
  });

  it('exits with 0 within 2 s of SIGTERM', async () => {
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const started = Date.now();
    child.kill('SIGTERM');
    const code = await exited;
    expect(code).toBe(0);
    expect(Date.now() - started).toBeLessThan(2000);
  });
});
