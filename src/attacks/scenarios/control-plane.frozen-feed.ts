import { setTimeout as sleep } from 'node:timers/promises';
import { callService } from '../../client/call.js';
import type { Session } from '../../client/session.js';
import { TrustedMsError } from '../../errors.js';
import { readLabState } from '../../kernel/lab-state.js';
import { homeOfLab } from '../../lab/restart.js';
import { DEFAULT_FEED_MAX_AGE_SECONDS } from '../../protocol/signed-feed.js';
import { victimSession } from '../plant.js';
import { TARGET } from '../target.js';
import { byDefences, type Scenario, type ScenarioContext, type Verdict } from '../types.js';
import { untilVictimServed } from '../victim-served.js';

/** Past the bound, what the attacker is served is judged: a margin for a poll and a request. */
const MARGIN_MS = 3000;
/** How often the session is tried while the control plane is frozen (to time the refusal). */
const PROBE_MS = 1000;
/** After the thaw: how long the parts may take to be back on a fresh feed (a poll's retry and answer). */
const RECOVER_MS = 20_000;

interface Freeze {
  pids: number[];
  frozen: boolean;
  frozenAt?: number;
}

/**
 * Issue 13, item 2: a control plane that goes quiet. The revocation list and the attestation table
 * the parts hold are only as current as the security service's last feed; an attacker who can stop
 * it (SIGSTOP on the host, a held connection, a partition) keeps every part acting on that last
 * state for as long as the freeze lasts: a revocation or a failed attestation made meanwhile cannot
 * reach anyone, and nothing says the parts are acting on old news.
 */
export const frozenFeed: Scenario = {
  id: 'control-plane.frozen-feed',
  title: 'The security service frozen: the parts keep acting on their last list',
  paperAttack: 5,
  technique: 'T1562',
  description:
    "The victim's session reads a customer record through the gateway. The attacker then freezes every security service process (SIGSTOP: its sockets stay open, so the parts see a slow control plane, not a dead one, and the watchman sees it alive), so that no revocation, quarantine or attestation verdict can reach the parts, and keeps using the session past the lab's maximum feed staleness (`lab up --feed-max-age`, 30 s by default) plus a margin. With plain feeds the gateway and the services act on their last revocation list and attestation table for as long as the freeze lasts: the session keeps reading. With signed feeds (feeds:signed) every feed carries its issue time; once the last one a part holds is older than the bound, the part refuses every request that depends on it with CONTROL_PLANE_STALE (503). Revert thaws the security service and waits until the session is served again (the parts recover by themselves with the next feed).",
  evidence:
    'Whether the session read the customer record through the gateway after the bound had passed with the control plane frozen (succeeded), or was refused (blocked, with the refusal code); when the first refusal came after the freeze, and how long the lab took to serve again after the thaw.',
  expected: byDefences((d) => (d.feeds === 'signed' ? 'blocked' : 'succeeded')),
  onlyOn: {
    runtimes: ['process'],
    why: 'the security service is held still with SIGSTOP, which needs its process on this host',
  },

  async setup(ctx) {
    // Read again: an earlier scenario may have had the security service restarted (a new pid).
    const lab = (await readLabState(homeOfLab(ctx.lab))) ?? ctx.lab;
    const pids = lab.parts
      .filter((p) => p.kind === 'security')
      .flatMap((p) => (p.pid === undefined ? [] : [p.pid]));
    if (pids.length === 0) throw new TrustedMsError('LAB_NOT_RUNNING', 'the security service has no process');
    ctx.scratch.freeze = { pids, frozen: false } satisfies Freeze;
    const before = await read(ctx);
    ctx.evidence.attempts.push({
      ...before.attempt,
      action: "the victim's session reads a customer record (before the freeze)",
      gotData: false,
    });
    if (!before.got) {
      ctx.evidence.inconclusive = `the session was not served before the freeze (${before.attempt.status} ${before.attempt.code ?? ''}): nothing to keep`;
    }
  },

  async detonate(ctx) {
    const freeze = ctx.scratch.freeze as Freeze;
    if (ctx.evidence.inconclusive) return;
    const boundMs = (ctx.lab.feedMaxAgeSeconds ?? DEFAULT_FEED_MAX_AGE_SECONDS) * 1000;
    for (const pid of freeze.pids) process.kill(pid, 'SIGSTOP');
    freeze.frozen = true;
    const frozenAt = performance.now();
    freeze.frozenAt = frozenAt;
    ctx.evidence.attempts.push({
      action: `freeze the security service (SIGSTOP, ${freeze.pids.length} process${freeze.pids.length > 1 ? 'es' : ''})`,
      target: ctx.lab.securityUrl,
      gotData: false,
    });
    // Probed every second: when (if ever) the parts stopped acting on their last list.
    let firstRefusal: { ms: number; status?: number; code?: string } | undefined;
    let served = 0;
    let probes = 0;
    while (performance.now() - frozenAt < boundMs + MARGIN_MS) {
      const r = await read(ctx);
      probes += 1;
      if (r.got) served += 1;
      else if (firstRefusal === undefined) {
        firstRefusal = {
          ms: Math.round(performance.now() - frozenAt),
          ...(r.attempt.status === undefined ? {} : { status: r.attempt.status }),
          ...(r.attempt.code === undefined ? {} : { code: r.attempt.code }),
        };
      }
      await sleep(PROBE_MS);
    }
    const after = await read(ctx);
    const afterMs = Math.round(performance.now() - frozenAt);
    ctx.evidence.attempts.push({
      ...after.attempt,
      action: `the session reads the customer record ${Math.round(afterMs / 1000)} s into the freeze (the bound: ${boundMs / 1000} s)`,
      gotData: after.got,
      note: after.got
        ? 'served on a revocation list and attestation table older than the bound'
        : 'refused: the part does not act on a list older than the bound',
    });
    ctx.evidence.measurements = {
      boundMs,
      probes,
      servedWhileFrozen: served,
      firstRefusalMs: firstRefusal?.ms ?? -1,
    };
    if (
      firstRefusal !== undefined &&
      firstRefusal.code !== undefined &&
      firstRefusal.code !== 'CONTROL_PLANE_STALE' &&
      !after.got
    ) {
      ctx.evidence.attempts.push({
        action: 'the first refusal while frozen',
        target: after.attempt.target,
        ...(firstRefusal.status === undefined ? {} : { status: firstRefusal.status }),
        code: firstRefusal.code,
        gotData: false,
        note: `after ${firstRefusal.ms} ms`,
      });
    }
  },

  judge(ctx: ScenarioContext): Verdict {
    if (ctx.evidence.inconclusive) return 'inconclusive';
    return ctx.evidence.attempts.some((a) => a.gotData) ? 'succeeded' : 'blocked';
  },

  async revert(ctx) {
    const freeze = ctx.scratch.freeze as Freeze | undefined;
    if (freeze === undefined) return;
    if (freeze.frozen) {
      for (const pid of freeze.pids) {
        try {
          process.kill(pid, 'SIGCONT');
        } catch {
          // gone: the watchman brings it back
        }
      }
      freeze.frozen = false;
      ctx.evidence.measurements = {
        ...ctx.evidence.measurements,
        servedAgainAfterThawMs: (
          await untilVictimServed(ctx.lab, ctx.victim, {
            withinMs: RECOVER_MS,
            session: ctx.scratch.victimSession as Session | undefined,
          })
        ).ms,
      };
    }
    ctx.scratch.freeze = undefined;
  },
};

async function read(ctx: ScenarioContext) {
  const session = await victimSession(ctx);
  const res = await callService(session, {
    gatewayUrl: ctx.lab.gatewayUrl,
    service: TARGET.service,
    path: TARGET.path,
  });
  const code = (res.body as { code?: unknown } | null)?.code;
  return {
    got: res.status === 200 && JSON.stringify(res.body).includes(TARGET.marker),
    attempt: {
      action: '',
      target: `GET ${ctx.lab.gatewayUrl}/svc/${TARGET.service}${TARGET.path}`,
      status: res.status,
      ...(typeof code === 'string' ? { code } : {}),
    },
  };
}
