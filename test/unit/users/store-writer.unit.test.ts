import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type LabState, writeLabState } from '../../../src/kernel/lab-state.js';
import { storeWriter } from '../../../src/users/store-writer.js';

/** A pid that ran and is gone. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', '0']);
  if (r.pid === undefined) throw new Error('no child');
  return r.pid;
}

/** A lab state with only what storeWriter reads: the security service's URL and the pids. */
function stateOf(securityUrl: string, security: number, watchman: number): LabState {
  return {
    version: 1,
    securityUrl,
    parts: [
      { name: 'security', kind: 'security', pid: security },
      { name: 'watchman', kind: 'supervisor', pid: watchman },
    ],
  } as unknown as LabState;
}

describe('who writes the store for a CLI command (storeWriter)', () => {
  let home: string;
  let server: Server | undefined;
  beforeEach(async () => {
    home = await mkdtemp(join(tmpdir(), 'tms-store-writer-'));
  });
  afterEach(async () => {
    if (server) await new Promise<void>((r) => server?.close(() => r()));
    server = undefined;
    await rm(home, { recursive: true, force: true });
  });

  /** A security service stand-in on a real socket that answers /healthz once `answering`. */
  async function security(answering: { now: boolean }): Promise<string> {
    server = createServer((req, res) => {
      if (!answering.now) {
        req.socket.destroy();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    });
    await new Promise<void>((r) => server?.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  it('the CLI itself when no lab runs', async () => {
    expect(await storeWriter(home, undefined)).toBe('store');
  });

  it('the security service when it answers', async () => {
    const state = stateOf(await security({ now: true }), process.pid, process.pid);
    await writeLabState(home, state);
    expect(await storeWriter(home, state)).toBe('security-service');
  });

  it('the security service the watchman is starting again: waited for, never written around (red team: killed, then a write raced its start)', async () => {
    const answering = { now: false };
    // The killed service's pid is gone; the watchman (this process, standing in) runs.
    const state = stateOf(await security(answering), deadPid(), process.pid);
    await writeLabState(home, state);
    setTimeout(() => {
      answering.now = true;
    }, 1500);
    const t0 = Date.now();
    expect(await storeWriter(home, state)).toBe('security-service');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1400);
  });

  it('the CLI itself when nothing of the lab is left to run or start the security service', async () => {
    const state = stateOf(await security({ now: false }), deadPid(), deadPid());
    await writeLabState(home, state);
    expect(await storeWriter(home, state)).toBe('store');
  });
});
