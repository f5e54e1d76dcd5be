import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { Agent, type Dispatcher } from 'undici';
import { authHeaders } from '../client/call.js';
import type { Session } from '../client/session.js';
import type { Defences } from '../defences/presets.js';
import { RATE_WAIT_HEADER } from '../defences/rate-limit.js';
import { TrustedMsError } from '../errors.js';
import { packageRoot } from '../paths.js';
import { ATTACKER_ADDRESS, assertLabAddress, assertOwnNetwork } from './http.js';

/**
 * Hard caps on any flood, whatever a scenario asks: a flood stops by itself after this many requests
 * or this long, with at most this many in flight, and only ever towards the lab's own addresses
 * (loopback, or from a container the lab's own network).
 */
export const FLOOD_CAPS = { requests: 20_000, durationMs: 10_000, concurrency: 512 } as const;

export interface FloodRequest {
  method: Dispatcher.HttpMethod;
  /** path with query, on the flood's origin */
  path: string;
  headers: Record<string, string>;
  /** a Buffer when the same bytes go with every request (built once: the attacker's cost is the send) */
  body?: string | Buffer;
}

export interface FloodOptions {
  /** the lab's address the flood goes to, e.g. the gateway's `http://127.0.0.1:port` */
  origin: string;
  /** the n-th request (built per request: fresh proofs, distinct passwords) */
  next: (n: number) => FloodRequest;
  requests: number;
  /** no request is started after this long ... */
  sendMs: number;
  /** ... and those still unanswered are cut at this (the flood's bound, >= sendMs) */
  durationMs: number;
  concurrency: number;
  /**
   * Where the flood is sent from: `loopback` (default), this host bound to 127.0.0.2 towards a
   * loopback origin; `network`, a container of the lab's, towards an address of its own network.
   */
  source?: 'loopback' | 'network';
  /** told once, as the first requests go out */
  onStart?: () => void;
}

export interface FloodResult {
  /** requests started */
  sent: number;
  /** answers by HTTP status, e.g. { "401": 120, "429": 3000 } */
  byStatus: Record<string, number>;
  /**
   * answers other than 429 whose request the gateway held back first (RATE_WAIT_HEADER): to the
   * user's rate, or a login step to its address's share of the security service; a 429 counts once,
   * as refused, held back first or not
   */
  queued: number;
  /** requests that got no answer (reset, refused; cut at the deadline) */
  noAnswer: number;
  /** why the first of those got none (an error code), as evidence of what the flood met */
  firstNoAnswer?: string;
  durationMs: number;
  /** the address the lab saw the flood come from, and where it went */
  from: string;
  origin: string;
}

/**
 * A closed-loop flood from the attacker's own address (127.0.0.2, or its container's): `concurrency`
 * workers each send the next request as soon as the previous one is answered, until the count or
 * `sendMs` runs out. The answers still due are awaited (the lab is busy with them: that is part of
 * the flood's effect) and cut at `durationMs`, so the flood never outlives it.
 */
export async function flood(opts: FloodOptions): Promise<FloodResult> {
  const fromNetwork = opts.source === 'network';
  const target = fromNetwork ? assertOwnNetwork(opts.origin) : undefined;
  const origin = (target?.url ?? assertLabAddress(opts.origin)).origin;
  const bindLoopback = !fromNetwork && process.platform === 'linux';
  const from = target?.from ?? (bindLoopback ? ATTACKER_ADDRESS : '127.0.0.1');
  const requests = clamp(opts.requests, 1, FLOOD_CAPS.requests);
  const durationMs = clamp(opts.durationMs, 1, FLOOD_CAPS.durationMs);
  const concurrency = clamp(opts.concurrency, 1, FLOOD_CAPS.concurrency);
  const agent = new Agent({
    connections: concurrency,
    ...(bindLoopback ? { localAddress: ATTACKER_ADDRESS } : {}),
    // edge:tls: a flood wants the gateway busy, not to know who answers; from a container it
    // reaches the gateway at an address its certificate does not name
    connect: { rejectUnauthorized: false },
  });
  const sendMs = clamp(opts.sendMs, 1, durationMs);
  const stop = new AbortController();
  // Every request in flight listens on it: that is `concurrency` listeners by design, not a leak.
  setMaxListeners(concurrency + 8, stop.signal);
  const timer = setTimeout(() => stop.abort(), durationMs);
  const sendUntil = Date.now() + sendMs;
  const byStatus: Record<string, number> = {};
  let sent = 0;
  let queued = 0;
  let noAnswer = 0;
  let firstNoAnswer: string | undefined;
  const t0 = performance.now();

  const worker = async (): Promise<void> => {
    while (sent < requests && Date.now() < sendUntil && !stop.signal.aborted) {
      const req = opts.next(sent);
      sent += 1;
      try {
        const res = await agent.request({
          origin,
          method: req.method,
          path: req.path,
          headers: req.headers,
          ...(req.body === undefined ? {} : { body: req.body }),
          signal: stop.signal,
        });
        await res.body.dump();
        byStatus[res.statusCode] = (byStatus[res.statusCode] ?? 0) + 1;
        if (res.statusCode !== 429 && res.headers[RATE_WAIT_HEADER] !== undefined) queued += 1;
      } catch (err) {
        noAnswer += 1;
        firstNoAnswer ??= errorCode(err);
      }
    }
  };
  try {
    opts.onStart?.();
    await Promise.all(Array.from({ length: concurrency }, worker));
  } finally {
    clearTimeout(timer);
    await agent.destroy().catch(() => undefined);
  }
  return {
    sent,
    byStatus,
    queued,
    noAnswer,
    durationMs: Math.round(performance.now() - t0),
    from,
    origin,
    ...(firstNoAnswer === undefined ? {} : { firstNoAnswer }),
  };
}

/**
 * What a flood sends, as data, so that it can cross to the worker thread that sends it:
 * - `login`: login attempts through the gateway as made-up users with random wrong passwords (each
 *   costs the lab a password hash; distinct, so no cache or in-flight check can share the work);
 * - `request`: requests to `path` through the gateway with the attacker's own valid session (a fresh
 *   proof of possession for each in trusted): GETs, or with `body` the same JSON body every time,
 *   encoded once, so that each request costs the lab a body to read and parse and the attacker only
 *   the send (and, in trusted, the proof's HMAC over it).
 */
export type FloodRecipe =
  | { kind: 'login'; login: Defences['login'] }
  | { kind: 'request'; session: Session; path: string; method?: 'GET' | 'POST'; body?: string };

export function recipeRequests(recipe: FloodRecipe): (n: number) => FloodRequest {
  if (recipe.kind === 'request') {
    const { session, path, body } = recipe;
    const method = recipe.method ?? 'GET';
    if (body === undefined)
      return () => ({ method, path, headers: authHeaders(session, method, path, undefined) });
    const bytes = Buffer.from(body, 'utf8');
    return () => ({
      method,
      path,
      headers: { 'content-type': 'application/json', ...authHeaders(session, method, path, body) },
      body: bytes,
    });
  }
  // Well-formed but useless to the lab: the challenge login wants an X25519 key with each attempt.
  const clientKey = randomBytes(32).toString('base64url');
  return (n): FloodRequest => {
    const user = `tms-flood-${n}`;
    const password = randomBytes(9).toString('base64url');
    if (recipe.login === 'basic') {
      return {
        method: 'GET',
        path: '/auth/basic',
        headers: { authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` },
      };
    }
    return {
      method: 'POST',
      path: '/auth/challenge',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user, password, ...(recipe.login === 'challenge' ? { clientKey } : {}) }),
    };
  };
}

export type FloodJob = Omit<FloodOptions, 'next' | 'onStart'> & { recipe: FloodRecipe };

/**
 * The one driver of every flood, whoever runs it: the worker thread of a process lab
 * (flood-worker.ts) and the attacker's container of a Docker lab (flood-main.ts).
 */
export function runFloodJob(job: FloodJob, onStart?: () => void): Promise<FloodResult> {
  const { recipe, ...opts } = job;
  return flood({ ...opts, next: recipeRequests(recipe), ...(onStart ? { onStart } : {}) });
}

/** A flood under way: `started` once its first requests go out, `result` when it is over. */
export interface FloodRun {
  started: Promise<void>;
  result: Promise<FloodResult>;
}

/** What the worker thread and the container program report, one message or line each. */
export type FloodMessage =
  | { event: 'started' }
  | { event: 'result'; result: FloodResult }
  | { event: 'failed'; error: string };

/**
 * Runs a flood in a worker thread: the attacker is then its own client with its own event loop, and
 * the legitimate user measured from this thread does not wait behind the attacker's own work
 * (building proofs, reading thousands of answers), only behind the lab's: what the lab does is what
 * is measured. The worker runs the built code (dist/), like the lab's parts.
 */
export function floodInWorker(job: FloodJob): FloodRun {
  assertLabAddress(job.origin);
  const worker = new Worker(join(packageRoot(), 'dist', 'src', 'attacks', 'flood-worker.js'), {
    workerData: job,
  });
  let started: () => void = () => undefined;
  const startedP = new Promise<void>((r) => {
    started = r;
  });
  const result = new Promise<FloodResult>((resolve, reject) => {
    worker.on('message', (m: FloodMessage) => {
      if (m.event === 'started') started();
      else if (m.event === 'result') resolve(m.result);
      else reject(new TrustedMsError('INTERNAL', `the flood failed: ${m.error}`));
    });
    worker.once('error', (err) => reject(new TrustedMsError('INTERNAL', `the flood failed: ${err.message}`)));
    worker.once('exit', (code) => {
      // After a result this is a no-op; before one (any code) the flood never reported: fail, never wait.
      reject(new TrustedMsError('INTERNAL', `the flood worker exited with ${code} before its result`));
    });
  }).finally(() => void worker.terminate());
  return { started: startedP, result };
}

function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : String((err as Error)?.message ?? err).slice(0, 80);
}

function clamp(n: number, min: number, max: number): number {
  return Math.max(min, Math.min(max, Math.floor(Number.isFinite(n) ? n : min)));
}
