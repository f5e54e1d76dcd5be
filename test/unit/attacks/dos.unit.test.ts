import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { networkInterfaces } from 'node:os';
import { describe, expect, it } from 'vitest';
import { DOS_RULES, DOS_THRESHOLDS, judgeFlood, latencyRatio } from '../../../src/attacks/dos.js';
import { FLOOD_CAPS, flood, recipeRequests } from '../../../src/attacks/flood.js';
import { floodQueryBody } from '../../../src/attacks/scenarios/dos.request-flood.js';
import type { ScenarioContext } from '../../../src/attacks/types.js';
import { RATE_WAIT_HEADER } from '../../../src/defences/rate-limit.js';
import { BODY_LIMIT } from '../../../src/services/http.js';

const ctxWith = (measurements: Record<string, number>) =>
  ({ evidence: { attempts: [], measurements } }) as unknown as ScenarioContext;

/** A run that measured everything, in which the victim kept its deadline, before, during and after. */
const base = {
  legitBaselineOps: 20,
  legitBaselinePerSecond: 10,
  legitBaselineSuccessRate: 1,
  legitDeadlineMs: 300,
  legitDuringOps: 10,
  legitDuringSuccessRate: 1,
  legitDuringMissedShare: 0,
  legitAfterOps: 20,
  legitAfterSuccessRate: 1,
  legitAfterMissedShare: 0,
  floodSent: 1000,
  floodSendPerSecond: 200,
  floodNoAnswer: 0,
  floodRefused429: 0,
  floodQueued: 0,
};
const login = judgeFlood(DOS_RULES.login);
const request = judgeFlood(DOS_RULES.request);
const judged = (judge: typeof login, m: Record<string, number>) => {
  const ctx = ctxWith(m);
  return { verdict: judge(ctx), reason: ctx.evidence.inconclusive };
};

describe('judgeFlood', () => {
  it('keeps the calibrated thresholds, read as deadlines: 3x the median for logins, 10x the p95 for requests', () => {
    expect(DOS_RULES.login).toEqual({
      percentile: 'p50',
      factor: DOS_THRESHOLDS.latencyFactor,
      lateShare: 0.5,
    });
    expect(DOS_RULES.request).toEqual({
      percentile: 'p95',
      factor: DOS_THRESHOLDS.requestFloodLatencyFactor,
      lateShare: 0.05,
    });
  });

  it('succeeded when the victim missed its deadline during a delivered flood and kept it after', () => {
    expect(judged(login, { ...base, legitDuringMissedShare: 0.51 })).toEqual({ verdict: 'succeeded' });
    expect(judged(login, { ...base, legitDuringMissedShare: 0.5, floodRefused429: 1 }).verdict).toBe(
      'blocked',
    );
    expect(judged(request, { ...base, legitDuringMissedShare: 0.06 }).verdict).toBe('succeeded');
    expect(judged(request, { ...base, legitDuringMissedShare: 0.05, floodQueued: 1 }).verdict).toBe(
      'blocked',
    );
    // a defence that engaged for a part of the flood and still let the victim miss did not block it
    expect(judged(request, { ...base, legitDuringMissedShare: 0.5, floodQueued: 499 }).verdict).toBe(
      'succeeded',
    );
  });

  it('succeeded when the success rate falls by more than ten points, whatever the lateness', () => {
    expect(judged(login, { ...base, legitDuringSuccessRate: 0.85, floodRefused429: 5 }).verdict).toBe(
      'succeeded',
    );
    expect(judged(login, { ...base, legitDuringSuccessRate: 0.91, floodRefused429: 5 }).verdict).toBe(
      'blocked',
    );
  });

  it('blocked only when a defence engaged for the attacker: refused it (429) or held it back to its rate', () => {
    expect(judged(login, { ...base, floodRefused429: 300 }).verdict).toBe('blocked');
    expect(judged(request, { ...base, floodQueued: 800 }).verdict).toBe('blocked');
  });

  it('inconclusive, never blocked, when the flood slowed no one and nothing limited it (a starved attacker)', () => {
    const r = judged(request, { ...base, floodSendPerSecond: 40 });
    expect(r.verdict).toBe('inconclusive');
    expect(r.reason).toMatch(/no defence engaged.*40\/s against the victim's 10\/s/);
    expect(judged(login, base).verdict).toBe('inconclusive');
  });

  it('inconclusive when the victim also missed its deadline after the flood: the baseline did not hold', () => {
    for (const after of [{ legitAfterMissedShare: 0.6 }, { legitAfterSuccessRate: 0.8 }]) {
      const r = judged(login, { ...base, legitDuringMissedShare: 1, ...after });
      expect(r.verdict).toBe('inconclusive');
      expect(r.reason).toMatch(/baseline did not hold/);
    }
  });

  it('inconclusive when the victim missed its deadline but the flood was not delivered, unless a defence met it', () => {
    const slow = { ...base, legitDuringMissedShare: 1, floodSendPerSecond: 4 };
    const r = judged(login, slow);
    expect(r.verdict).toBe('inconclusive');
    expect(r.reason).toMatch(/not delivered: the attacker sent 4\/s, less than 0.5x the victim's 10\/s/);
    // half the victim's own rate is enough: the flood's requests each cost the lab at least as much
    expect(judged(login, { ...slow, floodSendPerSecond: 5 }).verdict).toBe('succeeded');
    // held back by the defence, the attacker sends slowly by design: that is not a starved attacker
    expect(judged(login, { ...slow, floodRefused429: 5 }).verdict).toBe('succeeded');
  });

  it('inconclusive when a defence bound the flood and the victim still missed: the machine decided, not the attack', () => {
    const r = judged(request, { ...base, legitDuringMissedShare: 0.28, floodQueued: 868, floodNoAnswer: 10 });
    expect(r.verdict).toBe('inconclusive');
    expect(r.reason).toMatch(/a defence bound the flood \(868 of its 990 answers .*28% late or failed/);
    expect(judged(login, { ...base, legitDuringMissedShare: 1, floodRefused429: 500 }).verdict).toBe(
      'inconclusive',
    );
  });

  it('a flood that bit bites again before it is believed: a second that the victim kept up with makes it inconclusive, never blocked', () => {
    const bit = { ...base, legitDuringMissedShare: 1 };
    const twice = { floodRounds: 2, firstLegitDeadlineMs: 300, firstLegitDuringMissedShare: 0.8 };
    // both floods bit
    expect(judged(login, { ...bit, ...twice }).verdict).toBe('succeeded');
    // the second did not, and a defence engaged: one flood alone would be blocked; two that
    // disagree are a machine that was busy during the first
    const r = judged(login, { ...base, floodRefused429: 300, ...twice });
    expect(r.verdict).toBe('inconclusive');
    expect(r.reason).toMatch(
      /first flood made the victim miss its 300 ms deadline \(80% late or failed\), the second did not/,
    );
    expect(judged(login, { ...base, floodRefused429: 300 }).verdict).toBe('blocked');
    // the second was itself inconclusive: so is the cell, for its own reason
    const weak = judged(request, { ...base, floodSendPerSecond: 40, ...twice });
    expect(weak.verdict).toBe('inconclusive');
    expect(weak.reason).toMatch(/no defence engaged/);
  });

  it('inconclusive when the run did not measure what the verdict rests on', () => {
    for (const [m, why] of [
      [{ ...base, legitDuringOps: 0 }, /not measured during/],
      [{ ...base, legitAfterOps: 0 }, /not measured after/],
      [{ ...base, floodSent: 0 }, /sent nothing/],
      [{ ...base, legitBaselineSuccessRate: 0, legitDuringSuccessRate: 0 }, /already failed before/],
      // not one answer to the flood: it most likely never reached the lab
      [{ ...base, floodRefused429: 0, floodNoAnswer: base.floodSent }, /no answer at all/],
    ] as const) {
      const r = judged(login, { ...m, floodRefused429: 1 });
      expect(r.verdict, String(why)).toBe('inconclusive');
      expect(r.reason).toMatch(why);
    }
  });

  it('reads the deadline ratio the integration tests check, with the 5 ms floor', () => {
    const m = { ...base, legitBaselineP50Ms: 1, legitDuringP50Ms: 3 };
    expect(latencyRatio(m, 'p50')).toBe(0.6);
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

  it("counts the answers the gateway held back to the user's rate, by the header it sets on them", async () => {
    let n = 0;
    const server = createServer((_req, res) => {
      n += 1;
      if (n % 4 === 0) res.setHeader(RATE_WAIT_HEADER, '35');
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const r = await flood({
        origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        next: () => ({ method: 'GET', path: '/', headers: {} }),
        requests: 20,
        sendMs: 10_000,
        durationMs: 10_000,
        concurrency: 2,
      });
      expect(r).toMatchObject({ sent: 20, byStatus: { 200: 20 }, queued: 5 });
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
