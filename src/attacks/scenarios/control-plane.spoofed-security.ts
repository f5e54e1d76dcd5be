import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { callService } from '../../client/call.js';
import { measuredByRuntime } from '../../defences/attestation.js';
import { isTrustedMsError, TrustedMsError } from '../../errors.js';
import type { PartState } from '../../kernel/lab-state.js';
import type { SecurityPartConfig, SupervisorPartConfig } from '../../kernel/part-config.js';
import { homeOfLab } from '../../lab/restart.js';
import { readRestarts } from '../../lab/supervisor/restarts.js';
import { LAB_TIME_FIELD } from '../../protocol/lab-clock.js';
import { openUserAdmin } from '../../users/admin.js';
import { openRevocationAdmin } from '../../users/revocation-admin.js';
import { victimSession } from '../plant.js';
import { TARGET } from '../target.js';
import type { Scenario, ScenarioContext, Verdict } from '../types.js';
import { untilVictimServed } from '../victim-served.js';

/** How long the parts are left with the impostor: over two of the gateway's 2 s table polls. */
const SPOOF_MS = 5000;
/**
 * With a watchman that reports measurements, at least one of its rounds more: the red team saw it
 * hand the fake the lab token every 10 s, which a 5 s scenario never witnessed.
 */
const AFTER_ROUND_MS = 2000;
/** How long the revert waits for the watchman to bring the real security service back. */
const BACK_WITHIN_MS = 30_000;

interface Spoof {
  /** the victim was revoked in setup (reinstated at revert) */
  revoked: boolean;
  fakes: Server[];
  /** what reached the impostor */
  requests: number;
  tokenSeen: number;
  /** the watchman's measurement reports that reached the fake */
  attestationsSeen: number;
}

/**
 * Issue 13, the review's break: with the security service killed and a 30-line fake bound to its
 * port, the fake collected the lab token, a revoked user's ticket was accepted again, and the
 * watchman took the fake for the restarted service.
 */
export const spoofedSecurity: Scenario = {
  id: 'control-plane.spoofed-security',
  title: "An impostor on the security service's address after it dies",
  paperAttack: 5,
  technique: 'T1557',
  description:
    "The victim is revoked (its session stays refused). The attacker kills the security service and binds a fake on its address(es) before the watchman restarts it; the fake answers every part: an empty revocation list, every service trusted, its own ticket key. The fake stays over one of the watchman's measurement rounds (trusted) while the operator makes an admin call through the CLI (`user show`). The victim's revoked session is then tried through the gateway. In none and paper the parts reach the security service over plain HTTP and take whatever answers there: the gateway and the CLI send the fake the lab token and the gateway takes its empty revocation list, so the revoked session works again. In trusted the parts, the watchman's reports and the CLI's admin calls reach it only on its control-plane listener over mutual TLS and check its SPIFFE id: nothing is sent to the fake and the last revocation list stays in force; the watchman asks what listens there to prove it is the security service, reports the impostor in `lab status`, and does not take it for the restarted service. Revert closes the fake, lets the watchman restart the real security service, and reinstates the victim.",
  evidence:
    "Whether the lab token reached the fake (succeeded), whether the victim's revoked session read the customer record through the gateway (succeeded), what else reached the fake, what the CLI's admin call was told, how many of the watchman's measurement rounds fell while the fake was there and how many of its reports reached it, and whether the watchman reported the impostor.",
  expected: { none: 'succeeded', paper: 'succeeded', trusted: 'blocked' },
  onlyOn: {
    runtimes: ['process'],
    why: "the fake binds the security service's host port, and the watchman that restarts it runs on the process runtime; on Docker the security service's address is a container name on the lab network",
  },

  async setup(ctx) {
    const spoof: Spoof = { revoked: false, fakes: [], requests: 0, tokenSeen: 0, attestationsSeen: 0 };
    ctx.scratch.spoof = spoof;
    await victimSession(ctx);
    await (await openRevocationAdmin(homeOfLab(ctx.lab))).revokeUser(ctx.victim.name);
    spoof.revoked = true;
    await victimRead(ctx, 'the revoked victim reads a customer record (before the attack)', false);
  },

  async detonate(ctx) {
    const spoof = ctx.scratch.spoof as Spoof;
    const security = securityPart(ctx);
    const config = JSON.parse(await readFile(security.configFile, 'utf8')) as SecurityPartConfig;
    const labToken = (await readFile(config.labTokenFile, 'utf8')).trim();
    const ports = [config.port, ...(config.controlPort === undefined ? [] : [config.controlPort])];
    const services = ctx.lab.parts.filter((p) => p.kind === 'service').map((p) => p.name);
    const watchman = await watchmanOf(ctx);
    const spoofMs = watchman.reports ? Math.max(SPOOF_MS, watchman.intervalMs + AFTER_ROUND_MS) : SPOOF_MS;

    if (security.pid === undefined)
      throw new TrustedMsError('LAB_NOT_RUNNING', 'the security service has no process');
    process.kill(security.pid, 'SIGKILL');
    for (let i = 0; i < 100 && alive(security.pid); i++) await sleep(10);
    // The watchman waits 1 s before a first restart: the fake is bound well before.
    for (const port of ports) spoof.fakes.push(await impostor(port, spoof, labToken, services));
    const spoofedAt = new Date();
    ctx.evidence.attempts.push({
      action: `kill the security service and bind a fake on its port${ports.length > 1 ? 's' : ''} ${ports.join(', ')}`,
      target: `${security.url}`,
      gotData: false,
    });
    // The operator meanwhile: an admin call through the CLI's own path (what `user show` does),
    // while the parts and the watchman deal with the fake.
    const [adminCall] = await Promise.all([cliAdminCall(ctx), sleep(spoofMs)]);
    ctx.evidence.attempts.push(adminCall);

    await victimRead(ctx, "the revoked victim's session through the gateway, with the fake in place", true);
    ctx.evidence.attempts.push({
      action: 'collect the lab token from what the parts sent the fake',
      target: `${security.url}`,
      gotData: spoof.tokenSeen > 0,
      note: `${spoof.requests} requests reached the fake, ${spoof.tokenSeen} with the lab token`,
    });
    const reported = (await readRestarts(homeOfLab(ctx.lab))).security?.foreignListener;
    ctx.evidence.measurements = {
      requestsToFake: spoof.requests,
      labTokenSentToFake: spoof.tokenSeen,
      impostorReported: reported === undefined ? 0 : 1,
      spoofMs: Math.round(Date.now() - spoofedAt.getTime()),
      // how many of the watchman's measurement rounds fell while the fake was in place, and how
      // many of its reports reached the fake
      watchmanRounds: watchman.logFile ? await roundsSince(watchman.logFile, spoofedAt) : 0,
      watchmanReportsToFake: spoof.attestationsSeen,
    };
  },

  judge(ctx: ScenarioContext): Verdict {
    return ctx.evidence.attempts.some((a) => a.gotData) ? 'succeeded' : 'blocked';
  },

  async revert(ctx) {
    const spoof = ctx.scratch.spoof as Spoof | undefined;
    if (spoof === undefined) return;
    // Its kept-alive connections too, or close() waits for the parts to hang up.
    const closed = spoof.fakes.map((f) => new Promise<void>((r) => f.close(() => r())));
    for (const f of spoof.fakes) f.closeAllConnections();
    await Promise.all(closed);
    spoof.fakes = [];
    await securityBack(ctx);
    if (spoof.revoked) {
      await (await openRevocationAdmin(homeOfLab(ctx.lab))).reinstateUser(ctx.victim.name);
      spoof.revoked = false;
      ctx.evidence.measurements = {
        ...ctx.evidence.measurements,
        servedAgainAfterRevertMs: (await untilVictimServed(ctx.lab, ctx.victim, { withinMs: BACK_WITHIN_MS }))
          .ms,
      };
    }
    ctx.scratch.spoof = undefined;
  },
};

function securityPart(ctx: ScenarioContext): PartState {
  const part = ctx.lab.parts.find((p) => p.kind === 'security');
  if (part === undefined) throw new TrustedMsError('LAB_NOT_RUNNING', 'the lab has no security service');
  return part;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The victim's (revoked) session reads the target; `counts`: a record read is the attack's data. */
async function victimRead(ctx: ScenarioContext, action: string, counts: boolean): Promise<void> {
  const session = await victimSession(ctx);
  const res = await callService(session, {
    gatewayUrl: ctx.lab.gatewayUrl,
    service: TARGET.service,
    path: TARGET.path,
  });
  const code = (res.body as { code?: unknown } | null)?.code;
  const got = res.status === 200 && JSON.stringify(res.body).includes(TARGET.marker);
  ctx.evidence.attempts.push({
    action,
    target: `GET ${ctx.lab.gatewayUrl}/svc/${TARGET.service}${TARGET.path}`,
    status: res.status,
    ...(typeof code === 'string' ? { code } : {}),
    gotData: counts && got,
    ...(counts
      ? {}
      : { note: got ? 'read: the revocation was not in force' : 'refused, as a revoked session is' }),
  });
}

/** The watchman's rhythm: whether it reports measurements (measured attestation), how often, its log. */
async function watchmanOf(
  ctx: ScenarioContext,
): Promise<{ reports: boolean; intervalMs: number; logFile?: string }> {
  const part = ctx.lab.parts.find((p) => p.kind === 'supervisor');
  if (part === undefined) return { reports: false, intervalMs: 0 };
  const config = JSON.parse(await readFile(part.configFile, 'utf8')) as SupervisorPartConfig;
  return {
    reports: measuredByRuntime(config.defences.attestation),
    intervalMs: config.intervalSeconds * 1000,
    logFile: part.logFile,
  };
}

/** The watchman's measurement rounds logged from `since` on (done, or failed: both were attempts). */
async function roundsSince(logFile: string, since: Date): Promise<number> {
  const text = await readFile(logFile, 'utf8').catch(() => '');
  return text.split('\n').filter((line) => {
    const m = /^(\S+) (attested \d+ services|attestation round failed)/.exec(line);
    return m !== null && Date.parse(m[1] as string) >= since.getTime();
  }).length;
}

/** `user show <victim>` as the CLI runs it: where its lab token goes, and what it is told. */
async function cliAdminCall(ctx: ScenarioContext): Promise<ScenarioContext['evidence']['attempts'][number]> {
  const action = `a CLI admin call (user show ${ctx.victim.name}) while the fake holds the address`;
  try {
    const user = await (await openUserAdmin(homeOfLab(ctx.lab))).getUser(ctx.victim.name);
    return { action, target: 'the admin API', gotData: false, note: `answered: ${user.name}` };
  } catch (err) {
    const code = isTrustedMsError(err) ? err.code : undefined;
    return {
      action,
      target: 'the admin API',
      gotData: false,
      ...(code ? { code } : {}),
      note: `refused: ${(err as Error).message.slice(0, 200)}`,
    };
  }
}

/** The attacker's fake security service: plain HTTP, answering what the parts ask for with lies. */
function impostor(port: number, spoof: Spoof, labToken: string, services: string[]): Promise<Server> {
  const server = createServer((req, res) => {
    spoof.requests += 1;
    if (req.headers.authorization === `Bearer ${labToken}`) spoof.tokenSeen += 1;
    const url = new URL(req.url ?? '/', 'http://fake');
    if (url.pathname === '/v1/admin/attestations') spoof.attestationsSeen += 1;
    const send = (body: unknown) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(body));
    };
    if (url.pathname === '/v1/revocations') {
      // Nobody revoked; a poll already holding it is held a while, as the real one does.
      const list = { version: 'forged.1', users: {}, quarantined: [], [LAB_TIME_FIELD]: Date.now() };
      if (url.searchParams.get('since') === list.version) setTimeout(() => send(list), 1000).unref();
      else send(list);
    } else if (url.pathname === '/v1/services') {
      send({ services: services.map((name) => ({ name, state: 'trusted' })) });
    } else if (url.pathname === '/healthz') {
      send({ ok: true, part: 'security' });
    } else {
      res.statusCode = 404;
      send({ code: 'ROUTE_NOT_FOUND' });
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

/** The real security service, restarted by the watchman, answers again (its lab id, not a fake's). */
async function securityBack(ctx: ScenarioContext): Promise<void> {
  const deadline = performance.now() + BACK_WITHIN_MS;
  while (performance.now() < deadline) {
    try {
      const r = await request(`${ctx.lab.securityUrl}/healthz`, { headersTimeout: 1000, bodyTimeout: 1000 });
      const body = (await r.body.json()) as { labId?: unknown };
      if (body.labId === ctx.lab.labId) return;
    } catch {
      // not yet
    }
    await sleep(250);
  }
  throw new TrustedMsError(
    'LAB_NOT_RESTORED',
    'the security service did not come back after the impostor left',
  );
}
