import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../../src/errors.js';
import { createHttpApp } from '../../../src/services/http.js';

/** Raw bytes on a real socket: what Node's HTTP parser refuses before fastify's routing sees it. */
function rawExchange(
  port: number,
  bytes: string,
): Promise<{ status: number; headers: string; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const i = text.indexOf('\r\n\r\n');
      resolve({
        status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]),
        headers: text.slice(0, i),
        body: text.slice(i + 4),
      });
    });
    socket.end(bytes, 'latin1');
  });
}

describe('the error contract for requests the HTTP parser refuses (regressions from the fuzz suite)', () => {
  const app = createHttpApp();
  app.get('/healthz', async () => ({ ok: true }));
  let port = 0;
  beforeAll(async () => {
    await app.listen({ host: '127.0.0.1', port: 0 });
    port = (app.server.address() as { port: number }).port;
  });
  afterAll(() => app.close());

  it('answers a header section over the limit with 431 HEADERS_TOO_LARGE', async () => {
    const r = await rawExchange(
      port,
      `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
    );
    expect(r.status).toBe(431);
    expect(JSON.parse(r.body)).toEqual({ code: 'HEADERS_TOO_LARGE', message: 'request headers too large' });
    expect(ERROR_CODES.HEADERS_TOO_LARGE.http).toBe(431);
  });

  for (const [what, bytes] of [
    ['a lower-case method', 'get /healthz HTTP/1.1\r\nHost: x\r\n\r\n'],
    ['a NUL in a header', 'GET /healthz HTTP/1.1\r\nHost: x\r\nX: a\u0000b\r\n\r\n'],
    ['a request line that is not HTTP', 'GARBAGE\r\n\r\n'],
    [
      'both content-length and chunked',
      'POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    ],
  ] as const) {
    it(`answers ${what} with 400 INVALID_INPUT and a JSON body`, async () => {
      const r = await rawExchange(port, bytes);
      expect(r.status).toBe(400);
      expect(r.headers).toMatch(/content-type: application\/json/i);
      expect(JSON.parse(r.body)).toMatchObject({ code: 'INVALID_INPUT' });
    });
  }

  it('answers an Expect other than 100-continue with 417 EXPECTATION_FAILED', async () => {
    const r = await rawExchange(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: bogus\r\n\r\n');
    expect(r.status).toBe(417);
    expect(JSON.parse(r.body)).toMatchObject({ code: 'EXPECTATION_FAILED' });
  });

  it('still serves well-formed requests on the same server', async () => {
    const r = await rawExchange(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(r.status).toBe(200);
  });
});
