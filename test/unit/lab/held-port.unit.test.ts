import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { heldPort, portsOf } from '../../../src/lab/supervisor/held-port.js';

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

async function bound(): Promise<number> {
  const server = createServer((socket) => socket.destroy());
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as { port: number }).port;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

describe('the watchman looks at every port of a dead part (a squatter on the control-plane port alone)', () => {
  it("names the security service's control-plane port with its plain one, and only the security service's", () => {
    const control = 'https://127.0.0.1:43617';
    expect(portsOf({ kind: 'security', port: 37805 }, control)).toEqual([37805, 43617]);
    expect(portsOf({ kind: 'security', port: 37805 }, undefined)).toEqual([37805]);
    expect(portsOf({ kind: 'service', port: 4100 }, control)).toEqual([4100]);
  });

  it('finds a listener on the control-plane port while the plain one is free', async () => {
    const plain = await freePort();
    const control = await bound();
    const ports = portsOf({ kind: 'security', port: plain }, `https://127.0.0.1:${control}`);
    expect(await heldPort(ports)).toBe(control);
    expect(await heldPort([plain])).toBeUndefined();
  });
});
