import { callService } from '../../client/call.js';
import { login } from '../../client/login.js';
import type { Session } from '../../client/session.js';
import { TrustedMsError } from '../../errors.js';
import { BODY_LIMIT } from '../../services/http.js';
import { DOS_RULES, judgeFlood, measureUnderFlood, removeFloodLeftovers } from '../dos.js';
import { TARGET } from '../target.js';
import type { Scenario } from '../types.js';

/**
 * The service the attacker floods: one its own role (analyst) may read and query, so every request
 * is valid. The victim reads `path`; the attacker posts queries to `queryPath`.
 */
export const FLOODED = {
  service: 'catalog',
  path: '/db/catalog/records/prod-1',
  queryPath: '/db/catalog/query',
} as const;

/**
 * The attacker's query: valid (one `where` string, matching no record) and as large as the lab takes
 * (BODY_LIMIT, less a margin), made of `\n` escapes, the densest JSON a query's schema admits: the
 * gateway reads it and forwards it, the service reads it and parses every escape (measured ~0.4 ms
 * for 60 KiB, against ~0.1 ms for a plain string of that size), while the attacker sends the same
 * bytes every time.
 */
export function floodQueryBody(limit = BODY_LIMIT): string {
  const head = '{"where":{"title":"';
  const tail = '"}}';
  const escapes = Math.floor((limit - 1024 - head.length - tail.length) / 2);
  return `${head}${'\\n'.repeat(escapes)}${tail}`;
}

/**
 * The attacker floods one service with its own valid session while the victim works. Asymmetric,
 * like the login flood: plain reads (the previous version) cost the attacker, one thread on the same
 * two cores, about what they cost the services, so whether the flooded service queued depended on
 * the machine's other load (victim p95 1.3-30x in none, overlapping trusted's 0.4-4.4x). A 63 KiB
 * query of escapes costs the lab a body to relay and parse and the attacker one send of the same
 * bytes: the flooded service queues in none and paper whatever the load (bench/dos.ts, numbers at
 * DOS_THRESHOLDS.requestFloodLatencyFactor).
 */
export const requestFlood: Scenario = {
  id: 'dos.request-flood',
  title: 'Flood one service through the gateway while other users work',
  paperAttack: 3,
  technique: 'T1499',
  description:
    "The attacker logs in with its own account and, from its own address (127.0.0.2 on a process lab; on Docker a container of its own on the lab's edge network), keeps 512 queries of the catalog service in flight through the gateway for 5 s (then waits at most 5 s for the answers still due). Each query is valid (analyst may query catalog; a fresh proof of possession in trusted) and as large as the lab accepts: one 63 KiB string of JSON escapes, built once and sent again and again, which the gateway must read and relay and the catalog service parse. Meanwhile the victim keeps working: each step reads a catalog record (the flooded service) and then a customer record (another service). Neither none nor the paper's scheme limits a user's requests (the paper names DoS as its attack 3 but has nothing against it: a request with a valid ticket is served, however many come), so every query reaches the catalog service, which answers them in turn, and the victim waits behind them: both are expected to fall. Trusted allows a user 100 requests a second (burst 200) and makes the excess wait its turn at the gateway (up to 10 s, said on the answer by x-tms-rate-wait-ms) rather than answering 429 at once, so the flooding user, however many requests it keeps open, reaches the service at that rate only.",
  evidence: `Counts, not speeds, where they can be: the victim's deadline is ${DOS_RULES.request.factor}x its own p95 before the flood, in the same run. Succeeded when more than ${DOS_RULES.request.lateShare * 100}% of its steps during the flood failed or missed it, its steps after the flood kept it (the lab was not slow anyway) and the flood was delivered, twice in a row (a flood that bites is measured again before it is believed); blocked when they kept it and a defence engaged for the attacker (its queries held back to its rate by the gateway, or refused 429); inconclusive, and run once more, when neither holds (e.g. the attacker was starved of CPU and its flood slowed no one while nothing limited it). Also the flood's answers by status (2xx = served, 429 = refused) and how many were held back. Rules: judgeFlood and DOS_RULES in src/attacks/dos.ts.`,
  expected: { none: 'succeeded', paper: 'succeeded', trusted: 'blocked' },

  async setup(ctx) {
    const names = ctx.lab.parts.filter((p) => p.kind === 'service').map((p) => p.name);
    for (const name of [FLOODED.service, TARGET.service]) {
      if (!names.includes(name)) {
        throw new TrustedMsError('SERVICE_NOT_FOUND', `the lab has no ${name} service for this scenario`, {
          actions: ['bring the lab up with more services: --services 3 or more'],
        });
      }
    }
    const { lab, attacker, victim } = ctx;
    ctx.scratch.attacker = (await login(lab, attacker.name, attacker.password, attacker.privateKey)).session;
    ctx.scratch.victim = (await login(lab, victim.name, victim.password, victim.privateKey)).session;
  },

  async detonate(ctx) {
    const attacker = ctx.scratch.attacker as Session;
    const victim = ctx.scratch.victim as Session;
    const floodPath = `/svc/${FLOODED.service}${FLOODED.queryPath}`;
    const body = floodQueryBody();
    await measureUnderFlood(ctx, {
      legitAction: 'the victim reads a catalog record, then a customer record',
      legitTarget: `${ctx.lab.gatewayUrl}/svc/{${FLOODED.service},${TARGET.service}}/...`,
      legit: async () => {
        for (const [service, path] of [
          [FLOODED.service, FLOODED.path],
          [TARGET.service, TARGET.path],
        ] as const) {
          const r = await callService(victim, { gatewayUrl: ctx.lab.gatewayUrl, service, path });
          if (r.status !== 200) {
            const code = (r.body as { code?: unknown } | null)?.code;
            throw Object.assign(new Error(`the victim's read of ${service} answered ${r.status}`), {
              code: typeof code === 'string' ? code.slice(0, 64) : `HTTP_${r.status}`,
            });
          }
        }
      },
      rule: DOS_RULES.request,
      floodAction: `${Math.round(body.length / 1024)} KiB queries of ${FLOODED.service} with the attacker's own session`,
      flood: {
        origin: ctx.lab.gatewayUrl,
        recipe: { kind: 'request', session: attacker, path: floodPath, method: 'POST', body },
        // The flooded service answers in turn: the more the attacker keeps in flight, the longer its
        // other users wait behind them.
        concurrency: 512,
      },
    });
  },

  // The p95's share: the victim's reads of the flooded service queue behind the flood's, while its
  // reads of the other service do not; the factor is the request flood's own, from its measurements.
  judge: judgeFlood(DOS_RULES.request),
  // The sessions expire by themselves and the rate-limit buckets refill: what is left to undo is a
  // flood container of a run cut short (Docker).
  revert: removeFloodLeftovers,
};
