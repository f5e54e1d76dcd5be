import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { guardConnections } from '../../../src/services/connection-guard.js';
import { createHttpApp } from '../../../src/services/http.js';

/** Real sockets from two loopback addresses against a lab HTTP app (Linux routes all of 127/8 to lo). */
const ATTACKER = '127.0.0.3';
const OTHER = '127.0.0.1';

const open: Socket[] = [];
afterEach(() => {
  for (const s of open.splice(0)) s.destroy();
});

function socketFrom(localAddress: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, localAddress });
    open.push(s);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** Whether the server closed it within `ms` (it is closed from the server's side only). */
function closedWithin(s: Socket, ms: number): Promise<boolean> {
  if (s.destroyed || s.readableEnded) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    s.once('close', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

async function app(limits: { perSource: number; firstByteMs: number }) {
  const a = createHttpApp();
  a.get('/x', async () => ({ ok: true }));
  const guard = guardConnections(a.server, limits);
  await a.listen({ host: '127.0.0.1', port: 0 });
  const port = (a.server.address() as { port: number }).port;
  return { a, guard, port };
}

/** One GET on a socket (or the rest of one begun on it): its status line, or the error that ended it. */
async function getOn(
  s: Socket,
  request = 'GET /x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n',
): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    s.on('data', (d) => {
      text += d.toString('latin1');
    });
    s.once('close', () => resolve(text.split('\r\n')[0] ?? ''));
    s.once('error', (e) => resolve(`error ${(e as NodeJS.ErrnoException).code}`));
    s.write(request);
  });
}

describe.runIf(process.platform === 'linux')(
  'guardConnections (the limits defence at the gateway and the security service)',
  () => {
    it("closes an address's sockets past its share at once; another address still gets in", async () => {
      const { a, guard, port } = await app({ perSource: 3, firstByteMs: 60_000 });
      try {
        const mine = await Promise.all([1, 2, 3, 4, 5].map(() => socketFrom(ATTACKER, port)));
        const closed = await Promise.all(mine.map((s) => closedWithin(s, 1000)));
        expect(closed.filter(Boolean)).toHaveLength(2);
        expect(guard.heldBy(ATTACKER)).toBe(3);
        expect(guard.refusedOverShare).toBe(2);
        // someone else: served
        expect(await getOn(await socketFrom(OTHER, port))).toBe('HTTP/1.1 200 OK');
        // the attacker's share comes back as its sockets go
        for (const s of mine) s.destroy();
        await new Promise((r) => setTimeout(r, 100));
        expect(guard.heldBy(ATTACKER)).toBe(0);
        expect(await getOn(await socketFrom(ATTACKER, port))).toBe('HTTP/1.1 200 OK');
      } finally {
        await a.close();
      }
    });

    it('closes a socket that says nothing, and only that one', async () => {
      const { a, guard, port } = await app({ perSource: 100, firstByteMs: 300 });
      try {
        const silent = await socketFrom(ATTACKER, port);
        const talking = await socketFrom(ATTACKER, port);
        // a request that arrives after the deadline on a socket that spoke first is not cut
        talking.write('GET /x HTTP/1.1\r\nhost: x\r\n');
        expect(await closedWithin(silent, 3000)).toBe(true);
        expect(guard.closedSilent).toBe(1);
        expect(await getOn(talking, 'connection: close\r\n\r\n')).toBe('HTTP/1.1 200 OK');
      } finally {
        await a.close();
      }
    });

    it('without the guard (limits off), a silent socket is kept past the deadline the guard sets', async () => {
      const a = createHttpApp();
      await a.listen({ host: '127.0.0.1', port: 0 });
      try {
        const s = await socketFrom(ATTACKER, (a.server.address() as { port: number }).port);
        expect(await closedWithin(s, 1500)).toBe(false);
      } finally {
        a.server.closeAllConnections();
        await a.close();
      }
    });
  },
);
