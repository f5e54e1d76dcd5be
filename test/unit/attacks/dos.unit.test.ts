import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { networkInterfaces } from 'node:os';
import { describe, expect, it } from 'vitest';
import { judgeByDegradation, latencyRatio } from '../../../src/attacks/dos.js';
import { FLOOD_CAPS, flood, recipeRequests } from '../../../src/attacks/flood.js';
import { floodQueryBody } from '../../../src/attacks/scenarios/dos.request-flood.js';
import type { ScenarioContext } from '../../../src/attacks/types.js';
import { BODY_LIMIT } from '../../../src/services/http.js';

const ctxWith = (measurements: Record<string, number>) =>
  ({ evidence: { attempts: [], measurements } }) as unknown as ScenarioContext;

const base = {
  legitBaselineOps: 20,
  floodSent: 1000,
  legitBaselineSuccessRate: 1,
  legitBaselineP50Ms: 100,
  legitBaselineP95Ms: 200,
  legitDuringOps: 10,
  legitDuringSuccessRate: 1,
};

describe('judgeByDegradation', () => {
  it('succeeded when the judged percentile grows past 3x the baseline, blocked below', () => {
    const p50 = judgeByDegradation('p50');
    expect(p50(ctxWith({ ...base, legitDuringP50Ms: 301, legitDuringP95Ms: 0 }))).toBe('succeeded');
    expect(p50(ctxWith({ ...base, legitDuringP50Ms: 299, legitDuringP95Ms: 5000 }))).toBe('blocked');
    const p95 = judgeByDegradation('p95');
    expect(p95(ctxWith({ ...base, legitDuringP50Ms: 100, legitDuringP95Ms: 601 }))).toBe('succeeded');
    expect(p95(ctxWith({ ...base, legitDuringP50Ms: 1000, legitDuringP95Ms: 599 }))).toBe('blocked');
  });

  it("judges against a scenario's own factor when it gives one (the request flood's 10x)", () => {
    const p95 = judgeByDegradation('p95', 10);
    expect(p95(ctxWith({ ...base, legitDuringP50Ms: 100, legitDuringP95Ms: 2001 }))).toBe('succeeded');
    expect(p95(ctxWith({ ...base, legitDuringP50Ms: 100, legitDuringP95Ms: 1999 }))).toBe('blocked');
  });

  it('counts a tiny baseline as the 5 ms floor, so 1 ms to 3 ms is no denial of service', () => {
    const m = { ...base, legitBaselineP50Ms: 1, legitDuringP50Ms: 3, legitDuringP95Ms: 0 };
    expect(latencyRatio(m, 'p50')).toBe(0.6);
    expect(judgeByDegradation('p50')(ctxWith(m))).toBe('blocked');
  });

  it('succeeded when the success rate falls by more than ten points, whatever the latency', () => {
    const m = { ...base, legitDuringP50Ms: 1, legitDuringP95Ms: 1, legitDuringSuccessRate: 0.85 };
    expect(judgeByDegradation('p50')(ctxWith(m))).toBe('succeeded');
  });

  it('gives no verdict when the run did not measure what the verdict rests on', () => {
    const judge = judgeByDegradation('p50');
    for (const m of [
      { ...base, legitDuringOps: 0 },
      { ...base, floodSent: 0 },
      { ...base, legitBaselineSuccessRate: 0, legitDuringSuccessRate: 0 },
      // not one answer to the flood: it most likely never reached the lab
      { ...base, legitDuringP50Ms: 100, legitDuringP95Ms: 200, floodNoAnswer: base.floodSent },
    ]) {
      expect(() => judge(ctxWith(m))).toThrow(expect.objectContaining({ code: 'SCENARIO_INCONCLUSIVE' }));
    }
  });
});

describe('flood', () => {
  it('stops by itself at its count, from the attacker address, and reports the answers', async () => {
    const seen: string[] = [];
    const server = createServer((req, res) => {
      seen.push(req.socket.remoteAddress ?? '');
      res.writeHead(seen.length % 2 === 0 ? 429 : 200).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const r = await flood({
        origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        next: (n) => ({ method: 'GET', path: `/${n}`, headers: {} }),
        requests: 40,
        sendMs: 10_000,
        durationMs: 10_000,
        concurrency: 4,
      });
      expect(r.sent).toBe(40);
      expect(r.byStatus).toEqual({ 200: 20, 429: 20 });
      expect(r.noAnswer).toBe(0);
      expect(new Set(seen)).toEqual(new Set([process.platform === 'linux' ? '127.0.0.2' : '127.0.0.1']));
    } finally {
      server.close();
    }
  });

  it('stops by itself at its deadline, cutting what is still unanswered', async () => {
    // A server that never answers: only the deadline can end the flood.
    const server = createServer(() => undefined);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const r = await flood({
        origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        next: () => ({ method: 'GET', path: '/', headers: {} }),
        requests: 1000,
        sendMs: 100,
        durationMs: 300,
        concurrency: 3,
      });
      expect(r).toMatchObject({ sent: 3, noAnswer: 3, byStatus: {} });
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it('refuses any address but the lab loopback ones, before sending anything', async () => {
    await expect(
      flood({
        origin: 'http://10.0.0.1:80',
        next: () => ({ method: 'GET', path: '/', headers: {} }),
        requests: 1,
        sendMs: 10,
        durationMs: 10,
        concurrency: 1,
      }),
    ).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    expect(FLOOD_CAPS).toEqual({ requests: 20_000, durationMs: 10_000, concurrency: 512 });
  });
});

/** An address of this machine on a network of its own (not loopback), as a container has one. */
const ownAddress = Object.values(networkInterfaces())
  .flat()
  .find((a) => a !== undefined && !a.internal && a.family === 'IPv4')?.address;

describe('flood from a container of the lab (source: network)', () => {
  const once = (origin: string) =>
    flood({
      origin,
      source: 'network',
      next: () => ({ method: 'GET', path: '/', headers: {} }),
      requests: 3,
      sendMs: 1000,
      durationMs: 1000,
      concurrency: 1,
    });

  it('refuses loopback and any address off its own networks, before sending anything', async () => {
    for (const origin of ['http://127.0.0.1:80', 'http://203.0.113.7:80', 'http://example.com:80']) {
      await expect(once(origin), origin).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    }
  });

  it.runIf(ownAddress)(
    'sends to an address on its own network, unbound, and says where the lab saw it come from',
    async () => {
      const seen: string[] = [];
      const server = createServer((req, res) => {
        seen.push(req.socket.remoteAddress ?? '');
        res.end();
      });
      await new Promise<void>((r) => server.listen(0, ownAddress, r));
      try {
        const r = await once(`http://${ownAddress}:${(server.address() as AddressInfo).port}`);
        expect(r).toMatchObject({ sent: 3, byStatus: { 200: 3 }, noAnswer: 0, from: ownAddress });
        expect(new Set(seen)).toEqual(new Set([ownAddress]));
      } finally {
        server.close();
      }
    },
  );
});

describe('the request flood recipe', () => {
  const session = { user: 'tms-attacker', labId: 'lab', posture: 'none' as const, basic: 'YTpi' };

  it('sends one body built once: the same bytes with every request, as JSON', () => {
    const next = recipeRequests({
      kind: 'request',
      session,
      path: '/svc/catalog/db/catalog/query',
      method: 'POST',
      body: floodQueryBody(),
    });
    const [a, b] = [next(0), next(1)];
    expect(a).toMatchObject({ method: 'POST', path: '/svc/catalog/db/catalog/query' });
    expect(a.headers).toEqual({ 'content-type': 'application/json', authorization: 'Basic YTpi' });
    expect(Buffer.isBuffer(a.body)).toBe(true);
    expect(b.body).toBe(a.body);
  });

  it('builds a valid query just under the body limit, made of escapes the service must decode', () => {
    const body = floodQueryBody();
    expect(Buffer.byteLength(body)).toBeLessThan(BODY_LIMIT);
    expect(Buffer.byteLength(body)).toBeGreaterThan(BODY_LIMIT - 2048);
    const where = (JSON.parse(body) as { where: Record<string, unknown> }).where;
    expect(Object.keys(where)).toEqual(['title']);
    expect(where.title).toMatch(/^\n+$/);
  });

  it('keeps GETs without a body', () => {
    const r = recipeRequests({ kind: 'request', session, path: '/svc/catalog/x' })(0);
    expect(r).toEqual({ method: 'GET', path: '/svc/catalog/x', headers: { authorization: 'Basic YTpi' } });
  });
});
