import { setMaxListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from 'undici';
import { authHeaders } from '../client/call.js';
import { login } from '../client/login.js';
import type { Session } from '../client/session.js';
import { isTrustedMsError } from '../errors.js';
import { type EdgeConnectOptions, type EdgeView, edgeConnectFor } from '../kernel/edge-client.js';
import type { LabState } from '../kernel/lab-state.js';
import { isTlsFailure } from '../kernel/tls-failure.js';
import type { ServiceDefinition } from '../kernel/topology.js';
import type { Role } from '../policy/types.js';
import { type Histogram, type LatencySummary, latencyHistogram, recordMs, summarize } from './histogram.js';
import { type Mix, pickerFor } from './mix.js';
import { requestMaker } from './requests.js';
import { eachLimited, type VirtualUser } from './users.js';

const LOGIN_CONCURRENCY = 8;

export interface LoadRunOptions {
  lab: Pick<LabState, 'labId' | 'posture' | 'defences' | 'gatewayUrl' | 'caFile'> & EdgeView;
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
  /** handshakes in flight at once (8) */
  loginConcurrency?: number;
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
    /** logins refused with RATE_LIMITED (or timed out) and tried again after a pause, as a real client would */
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
  if (isTlsFailure(err)) return 'EDGE_CERTIFICATE_UNTRUSTED';
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') return 'TIMEOUT';
  return typeof code === 'string' && /^[A-Z][A-Z0-9_]{0,63}$/.test(code) ? code : 'NETWORK_ERROR';
}

const add = (m: Record<string, number>, k: string): void => {
  m[k] = (m[k] ?? 0) + 1;
};

/**
 * A virtual user's own connection to the gateway, from its own loopback address (`bind`), or, in a
 * client container of its own, from the container's address.
 */
export function openClients(
  gatewayUrl: string,
  count: number,
  timeoutMs = 10_000,
  bind = true,
  /** edge:tls: how to check the gateway's certificate (edgeConnectFor) */
  tls?: EdgeConnectOptions,
): Client[] {
  const origin = new URL(gatewayUrl).origin;
  return Array.from({ length: count }, (_, i) => {
    const address = bind ? clientAddress(i) : undefined;
    return new Client(origin, {
      ...(address === undefined ? {} : { localAddress: address }),
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      keepAliveTimeout: 60_000,
      connectTimeout: 5000,
      ...(tls === undefined ? {} : { connect: tls }),
    });
  });
}

export async function closeClients(clients: readonly Client[]): Promise<void> {
  await Promise.all(clients.map((c) => c.close().catch(() => c.destroy().catch(() => undefined))));
}

/** Calls `report(elapsedMs, perSecond)` once a second until stopped; `count()` per thing done. */
function ticker(report: (elapsedMs: number, perSecond: number) => void): {
  stop: () => void;
  count: () => void;
} {
  const start = performance.now();
  let done = 0;
  let lastDone = 0;
  let last = start;
  const timer = setInterval(() => {
    const t = performance.now();
    report(t - start, ((done - lastDone) * 1000) / (t - last));
    lastDone = done;
    last = t;
  }, 1000);
  timer.unref();
  return {
    stop: () => clearInterval(timer),
    count: () => {
      done += 1;
    },
  };
}

export type LoginFigures = LoadRunResult['logins'];

/**
 * Every virtual user logs in with the full handshake on its own connection, all at once. A login
 * refused with RATE_LIMITED (the gateway and, in trusted, the security service limit logins per
 * client address) or timed out is tried again after a pause, for up to `loginRetryMs`.
 */
export async function loginAll(
  opts: Pick<LoadRunOptions, 'lab' | 'users' | 'onProgress' | 'signal' | 'loginRetryMs' | 'loginConcurrency'>,
  clients: readonly Client[],
): Promise<{ sessions: (Session | undefined)[]; logins: LoginFigures; histogram: Histogram }> {
  const { lab, users } = opts;
  const hist = latencyHistogram();
  const errors: Record<string, number> = {};
  let retries = 0;
  let ok = 0;
  let failed = 0;
  const start = performance.now();
  const retryUntil = start + (opts.loginRetryMs ?? 30_000);
  const tick = ticker((elapsedMs, perSecond) =>
    opts.onProgress?.({ phase: 'login', elapsedMs, durationMs: 0, done: ok, errors: failed, perSecond }),
  );
  try {
    // At most LOGIN_CONCURRENCY handshakes at a time, as a fleet of clients ramps up: all 150 at
    // once queue 150 password hashes at the security service, and under a loaded machine the
    // gateway's 5 s wait for a password check then times out for all of them, again and again.
    const sessions = await eachLimited(
      users.map((u, i) => [u, i] as const),
      opts.loginConcurrency ?? LOGIN_CONCURRENCY,
      async ([u, i]): Promise<Session | undefined> => {
        for (;;) {
          if (opts.signal?.aborted) return undefined;
          const t0 = performance.now();
          try {
            const { session } = await login(lab, u.name, u.password, u.privateKey, clients[i]);
            recordMs(hist, performance.now() - t0);
            ok += 1;
            tick.count();
            return session;
          } catch (err) {
            const code = networkCode(err);
            // A login storm can also outlast a request's timeout: try again (the gateway joins a
            // retry to the check still running for the same credentials).
            if (
              (code === 'RATE_LIMITED' || code === 'SERVICE_UNAVAILABLE' || code === 'SERVICE_DOWN') &&
              performance.now() < retryUntil
            ) {
              retries += 1;
              await sleep(200 + Math.random() * 800);
              continue;
            }
            add(errors, code);
            failed += 1;
            return undefined;
          }
        }
      },
    );
    const ms = performance.now() - start;
    return {
      sessions,
      histogram: hist,
      logins: {
        attempted: users.length,
        ok,
        retries,
        errors,
        durationMs: Math.round(ms),
        perSecond: Math.round(((ok * 1000) / Math.max(1, ms)) * 10) / 10,
        latencyMs: summarize(hist),
      },
    };
  } finally {
    tick.stop();
  }
}

export type RequestFigures = Omit<LoadRunResult, 'logins' | 'posture' | 'clients'> & {
  /** per service, kept for merging (client containers); not part of the JSON output */
  serviceHistograms: Record<string, Histogram>;
};

/**
 * The logged-in users send requests through the gateway until the duration is over, closed loop
 * (one request in flight per user) or at a constant total rate (wrk2's way: each user has a
 * schedule; a late answer delays the next send, but its latency counts from when it should have
 * been sent). Bounded: stops at the duration, and what is still in flight `graceMs` later is cut.
 */
export async function sendRequests(
  opts: Omit<LoadRunOptions, 'lab'>,
  clients: readonly Client[],
  sessions: readonly (Session | undefined)[],
): Promise<RequestFigures> {
  const { users, durationMs } = opts;
  const graceMs = opts.graceMs ?? 5000;
  const make = requestMaker(opts.services);
  const pickers = new Map(
    [...new Set(users.map((u) => u.role))].map((r) => [r, pickerFor(opts.mix, opts.roles[r] as Role)]),
  );
  const hist = latencyHistogram();
  const errors: Record<string, number> = {};
  let errorCount = 0;
  let done = 0;
  const perService = new Map(
    opts.services.map((s) => [s.name, { requests: 0, errors: 0, hist: latencyHistogram() }]),
  );
  const start = performance.now();
  let end = start + durationMs;
  // Wakes the constant-rate loops from their sleep between sends when the run is stopped early.
  const stopped = new AbortController();
  // each constant-rate loop sleeps on it at once: one listener per virtual user is expected
  setMaxListeners(users.length + 10, stopped.signal);
  const stop = (): void => {
    end = Math.min(end, performance.now());
    stopped.abort();
  };
  opts.signal?.addEventListener('abort', stop, { once: true });
  if (opts.signal?.aborted) stop();
  const tick = ticker((elapsedMs, perSecond) =>
    opts.onProgress?.({ phase: 'requests', elapsedMs, durationMs, done, errors: errorCount, perSecond }),
  );
  const interval = opts.rate === undefined ? 0 : (users.length * 1000) / opts.rate;

  const one = async (client: Client, session: Session, vu: VirtualUser, seq: number, sentAt: number) => {
    const entry = pickers.get(vu.role)?.pick(Math.random());
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
    tick.count();
    recordMs(hist, ms);
    if (svc) {
      svc.requests += 1;
      recordMs(svc.hist, ms);
    }
    if (code !== undefined) {
      errorCount += 1;
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
      if (wait > 0) await sleep(wait, undefined, { signal: stopped.signal }).catch(() => undefined);
      if (intended >= end) break;
      await one(client, session, vu, seq++, intended);
      intended += interval;
    }
  });
  let cut = false;
  const all = Promise.all(loops);
  await new Promise<void>((resolve) => {
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
  if (cut) {
    // Cut what is still in flight: its requests fail (and count as errors) and the loops end.
    await Promise.all(clients.map((c) => c.destroy().catch(() => undefined)));
    await all;
  }
  tick.stop();
  opts.signal?.removeEventListener('abort', stop);
  const elapsed = performance.now() - start;
  const requests = hist.totalCount;
  return {
    mode: opts.rate === undefined ? 'closed-loop' : 'constant-rate',
    ...(opts.rate === undefined ? {} : { targetRate: opts.rate }),
    durationMs: Math.round(elapsed),
    requests,
    ok: requests - errorCount,
    errors,
    reqPerSec: Math.round((requests * 1000) / elapsed),
    latencyMs: summarize(hist),
    services: [...perService]
      .filter(([, s]) => s.requests > 0)
      .map(([service, s]) => ({
        service,
        requests: s.requests,
        errors: s.errors,
        latencyMs: summarize(s.hist),
      })),
    histogram: hist,
    serviceHistograms: Object.fromEntries(
      [...perService].filter(([, s]) => s.requests > 0).map(([name, s]) => [name, s.hist]),
    ),
  };
}

/** The whole run: clients open, everyone logs in, requests for the duration, clients closed. */
export async function runLoad(opts: LoadRunOptions): Promise<LoadRunResult> {
  const clients = openClients(
    opts.lab.gatewayUrl,
    opts.users.length,
    opts.timeoutMs,
    true,
    edgeConnectFor(opts.lab),
  );
  try {
    const { sessions, logins } = await loginAll(opts, clients);
    const { serviceHistograms: _s, ...figures } = await sendRequests(opts, clients, sessions);
    return { posture: opts.lab.posture, clients: opts.users.length, ...figures, logins };
  } finally {
    await closeClients(clients);
  }
}
