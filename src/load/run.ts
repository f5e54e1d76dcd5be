import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from 'undici';
import { authHeaders } from '../client/call.js';
import { login } from '../client/login.js';
import type { Session } from '../client/session.js';
import { isTrustedMsError } from '../errors.js';
import type { LabState } from '../lab/state.js';
import type { ServiceDefinition } from '../lab/topology.js';
import type { Role } from '../policy/types.js';
import { type Histogram, type LatencySummary, latencyHistogram, recordMs, summarize } from './histogram.js';
import { type Mix, pickerFor } from './mix.js';
import { requestMaker } from './requests.js';
import type { VirtualUser } from './users.js';

export interface LoadRunOptions {
  lab: Pick<LabState, 'labId' | 'posture' | 'gatewayUrl'>;
  users: readonly VirtualUser[];
  roles: Record<string, Role>;
  services: readonly ServiceDefinition[];
  mix: Mix;
  durationMs: number;
  /** total requests per second across all users (constant rate); closed loop when absent */
  rate?: number;
  /** called about once a second while requests run */
  onProgress?: (p: LoadProgress) => void;
  /** how long requests still in flight at the end may take before their connections are closed */
  graceMs?: number;
  /** per request; a slower answer is an error (TIMEOUT) */
  timeoutMs?: number;
  /** ends the run early (Ctrl-C): no new requests, the result covers what was sent */
  signal?: AbortSignal;
  /** how long a user keeps retrying a login refused with RATE_LIMITED (30 s) */
  loginRetryMs?: number;
}

export interface LoadProgress {
  phase: 'login' | 'requests';
  elapsedMs: number;
  durationMs: number;
  done: number;
  errors: number;
  /** over the last interval */
  perSecond: number;
}

export interface ServiceFigures {
  service: string;
  requests: number;
  errors: number;
  latencyMs: LatencySummary;
}

export interface LoadRunResult {
  posture: string;
  mode: 'closed-loop' | 'constant-rate';
  clients: number;
  /** constant-rate: the rate asked for */
  targetRate?: number;
  durationMs: number;
  requests: number;
  ok: number;
  errors: Record<string, number>;
  reqPerSec: number;
  /** closed loop: from send to answer; constant rate: from the intended send time (no coordinated omission) */
  latencyMs: LatencySummary;
  logins: {
    attempted: number;
    ok: number;
    /** logins refused with RATE_LIMITED and tried again after a pause, as a real client would */
    retries: number;
    errors: Record<string, number>;
    durationMs: number;
    perSecond: number;
    latencyMs: LatencySummary;
  };
  services: ServiceFigures[];
  /** kept for charts and merging; not part of the JSON output */
  histogram: Histogram;
}

/**
 * The source address of virtual user `i`: on Linux each user gets its own loopback address, as
 * each of the paper's 150 user containers had its own IP, so per-client limits see 150 clients
 * and not one. Elsewhere (only 127.0.0.1 is routed) all share 127.0.0.1.
 */
export function clientAddress(i: number): string | undefined {
  if (process.platform !== 'linux') return undefined;
  return `127.77.${Math.floor(i / 254)}.${(i % 254) + 1}`;
}

/** The error code of an answer: the lab's `code` field, else `HTTP_<status>`. */
function codeOf(status: number, text: string): string {
  try {
    const code = (JSON.parse(text) as { code?: unknown } | null)?.code;
    if (typeof code === 'string' && /^[A-Z][A-Z0-9_]{0,63}$/.test(code)) return code;
  } catch {
    // not JSON
  }
  return `HTTP_${status}`;
}

function networkCode(err: unknown): string {
  if (isTrustedMsError(err)) return err.code;
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') return 'TIMEOUT';
  return typeof code === 'string' && /^[A-Z][A-Z0-9_]{0,63}$/.test(code) ? code : 'NETWORK_ERROR';
}

const add = (m: Record<string, number>, k: string): void => {
  m[k] = (m[k] ?? 0) + 1;
};

/**
 * Runs the load: every virtual user logs in with the full handshake on its own connection, then
 * all send requests through the gateway until the duration is over, closed loop (one request in
 * flight per user) or at a constant total rate (wrk2's way: each user has a schedule, a late answer
 * delays the next send but its latency counts from when it should have been sent). Bounded: stops
 * at the duration, and what is still in flight `graceMs` later is cut off.
 */
export async function runLoad(opts: LoadRunOptions): Promise<LoadRunResult> {
  const { lab, users, durationMs } = opts;
  const graceMs = opts.graceMs ?? 5000;
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const origin = new URL(lab.gatewayUrl).origin;
  const clients = users.map((_, i) => {
    const address = clientAddress(i);
    return new Client(origin, {
      ...(address === undefined ? {} : { localAddress: address }),
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      keepAliveTimeout: 60_000,
      connectTimeout: 5000,
    });
  });
  const make = requestMaker(opts.services);
  const pickers = new Map(
    [...new Set(users.map((u) => u.role))].map((r) => [r, pickerFor(opts.mix, opts.roles[r] as Role)]),
  );

  let done = 0;
  let errorsSeen = 0;
  let lastDone = 0;
  let phase: LoadProgress['phase'] = 'login';
  let phaseStart = performance.now();
  let lastTick = phaseStart;
  const ticker = setInterval(() => {
    const t = performance.now();
    const perSecond = ((done - lastDone) * 1000) / (t - lastTick);
    lastDone = done;
    lastTick = t;
    opts.onProgress?.({
      phase,
      elapsedMs: t - phaseStart,
      durationMs: phase === 'login' ? 0 : durationMs,
      done,
      errors: errorsSeen,
      perSecond,
    });
  }, 1000);
  ticker.unref();

  try {
    // 1. logins, all at once: the handshake rate is part of the result
    const loginHist = latencyHistogram();
    const loginErrors: Record<string, number> = {};
    let retries = 0;
    const loginStart = performance.now();
    const retryUntil = loginStart + (opts.loginRetryMs ?? 30_000);
    const sessions = await Promise.all(
      users.map(async (u, i): Promise<Session | undefined> => {
        for (;;) {
          if (opts.signal?.aborted) return undefined;
          const t0 = performance.now();
          try {
            const { session } = await login(lab, u.name, u.password, u.privateKey, clients[i]);
            recordMs(loginHist, performance.now() - t0);
            done += 1;
            return session;
          } catch (err) {
            const code = networkCode(err);
            // The security service limits logins per address, and it sees the gateway's: back off.
            if (code === 'RATE_LIMITED' && performance.now() < retryUntil) {
              retries += 1;
              await sleep(200 + Math.random() * 800);
              continue;
            }
            add(loginErrors, code);
            errorsSeen += 1;
            return undefined;
          }
        }
      }),
    );
    const loginMs = performance.now() - loginStart;
    const loginsOk = sessions.filter((s) => s !== undefined).length;

    // 2. requests
    phase = 'requests';
    done = 0;
    lastDone = 0;
    errorsSeen = 0;
    const hist = latencyHistogram();
    const errors: Record<string, number> = {};
    const perService = new Map(
      opts.services.map((s) => [s.name, { requests: 0, errors: 0, hist: latencyHistogram() }]),
    );
    const start = performance.now();
    phaseStart = start;
    lastTick = start;
    let end = start + durationMs;
    const stop = (): void => {
      end = Math.min(end, performance.now());
    };
    opts.signal?.addEventListener('abort', stop, { once: true });
    if (opts.signal?.aborted) stop();
    const interval = opts.rate === undefined ? 0 : (users.length * 1000) / opts.rate;

    const one = async (client: Client, session: Session, vu: VirtualUser, seq: number, sentAt: number) => {
      const picker = pickers.get(vu.role);
      const entry = picker?.pick(Math.random());
      if (entry === undefined) return;
      const req = make(entry, vu.index, seq);
      const svc = perService.get(req.service);
      let code: string | undefined;
      try {
        const headers = authHeaders(session, req.method, req.path, req.body);
        if (req.body !== undefined) headers['content-type'] = 'application/json';
        const res = await client.request({
          method: req.method,
          path: req.path,
          headers,
          ...(req.body === undefined ? {} : { body: req.body }),
        });
        if (res.statusCode >= 400) code = codeOf(res.statusCode, await res.body.text());
        else await res.body.dump();
      } catch (err) {
        code = networkCode(err);
      }
      const ms = performance.now() - sentAt;
      done += 1;
      recordMs(hist, ms);
      if (svc) {
        svc.requests += 1;
        recordMs(svc.hist, ms);
      }
      if (code !== undefined) {
        errorsSeen += 1;
        add(errors, code);
        if (svc) svc.errors += 1;
      }
    };

    const loops = users.map(async (vu, i) => {
      const session = sessions[i];
      const client = clients[i] as Client;
      if (session === undefined) return;
      let seq = 0;
      if (interval === 0) {
        while (performance.now() < end) await one(client, session, vu, seq++, performance.now());
        return;
      }
      // Spread the users' schedules evenly over one interval so the total rate is smooth.
      let intended = start + (interval * i) / users.length;
      while (intended < end) {
        const wait = intended - performance.now();
        if (wait > 0) await sleep(wait);
        await one(client, session, vu, seq++, intended);
        intended += interval;
      }
    });
    let cut = false;
    const all = Promise.all(loops);
    const deadline = new Promise<void>((resolve) => {
      const check = setInterval(() => {
        if (performance.now() >= end + graceMs) {
          cut = true;
          resolve();
        }
      }, 100);
      void all.finally(() => {
        clearInterval(check);
        resolve();
      });
    });
    await Promise.race([all, deadline]);
    opts.signal?.removeEventListener('abort', stop);
    if (cut) {
      // Cut what is still in flight: its requests fail (and count as errors) and the loops end.
      await Promise.all(clients.map((c) => c.destroy().catch(() => undefined)));
      await all;
    }
    const elapsed = performance.now() - start;
    const requests = hist.totalCount;
    const errorCount = Object.values(errors).reduce((a, b) => a + b, 0);
    return {
      posture: lab.posture,
      mode: opts.rate === undefined ? 'closed-loop' : 'constant-rate',
      clients: users.length,
      ...(opts.rate === undefined ? {} : { targetRate: opts.rate }),
      durationMs: Math.round(elapsed),
      requests,
      ok: requests - errorCount,
      errors,
      reqPerSec: Math.round((requests * 1000) / elapsed),
      latencyMs: summarize(hist),
      logins: {
        attempted: users.length,
        ok: loginsOk,
        retries,
        errors: loginErrors,
        durationMs: Math.round(loginMs),
        perSecond: Math.round(((loginsOk * 1000) / Math.max(1, loginMs)) * 10) / 10,
        latencyMs: summarize(loginHist),
      },
      services: [...perService]
        .filter(([, s]) => s.requests > 0)
        .map(([service, s]) => ({
          service,
          requests: s.requests,
          errors: s.errors,
          latencyMs: summarize(s.hist),
        })),
      histogram: hist,
    };
  } finally {
    clearInterval(ticker);
    await Promise.all(clients.map((c) => c.close().catch(() => c.destroy().catch(() => undefined))));
  }
}
