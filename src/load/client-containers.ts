import { join } from 'node:path';
import { TrustedMsError } from '../errors.js';
import { edgeCaPem } from '../kernel/edge-client.js';
import type { LabState } from '../kernel/lab-state.js';
import { type EdgeProgramHandle, edgeNetworkOf } from '../lab/runtimes/edge.js';
import { runtimeFor } from '../lab/runtimes/select.js';
import { packageRoot } from '../paths.js';
import type { ClientJob, ClientMessage } from './client-job.js';
import { mergeHistograms, summarize } from './histogram.js';
import type { LoadRunOptions, LoadRunResult } from './run.js';
import { eachLimited } from './users.js';

/** Client containers created and started at a time (the engine serialises much of it anyway). */
const START_CONCURRENCY = 8;
/** Each client container's memory limit: a Node client uses a fraction of it (measured, below). */
const CLIENT_MEMORY_BYTES = 256 * 1024 * 1024;
/** How long a client waits for its turn to log in and for the go, and the host for every login. */
const READY_WITHIN_MS = 180_000;
/** Clients logging in at a time (the host's own load: LOGIN_CONCURRENCY, 8). */
const LOGINS_AT_ONCE = 8;
const GRACE_MS = 5000;
const PART_PREFIX = 'load-client-';
const MiB = 1024 * 1024;

export interface ClientContainerFigures {
  count: number;
  /** from the first container created to the last one started */
  startMs: number;
  /** memory each client container used, as `docker stats` counts it, sampled mid-run */
  memoryMiB: { mean: number; max: number; sampled: number; limit: number };
}

/** The options of a load run (run.ts), with the whole lab state (its network) and step messages. */
export type ClientContainerOptions = Pick<
  LoadRunOptions,
  'users' | 'roles' | 'services' | 'mix' | 'durationMs' | 'rate' | 'timeoutMs' | 'onProgress' | 'signal'
> & {
  lab: LabState;
  onStep?: (line: string) => void;
};

/**
 * `lab load --client-containers N`: each virtual user in a container of its own on the Docker
 * lab's edge network (as the paper's 150 user containers), through the gateway's address there,
 * so the gateway sees N clients at N addresses. Every client logs in, the host says go to all at
 * once, each sends the mix for the duration and reports its figures with its HDR histograms, which
 * are merged here (never averaged). The containers are EdgePrograms (as the DoS attacker's flood):
 * labelled as the lab's, killed at a deadline, removed afterwards whatever happens.
 */
export async function runInClientContainers(
  opts: ClientContainerOptions,
): Promise<{ result: LoadRunResult; containers: ClientContainerFigures }> {
  const { lab, users } = opts;
  const step = opts.onStep ?? (() => undefined);
  const edge = edgeNetworkOf(await runtimeFor(lab.runtime, lab), '`lab load --client-containers`');
  const gateway = lab.parts.find((p) => p.kind === 'gateway');
  if (gateway === undefined) throw new TrustedMsError('LAB_NOT_RUNNING', `lab ${lab.labId} has no gateway`);
  const origin = await edge.urlOf(lab, gateway.name);
  const edgeCa = edgeCaPem(lab);
  const program = join(packageRoot(), 'dist', 'lab', 'load-client.mjs');
  const perClientRate = opts.rate === undefined ? undefined : opts.rate / users.length;
  const programs: EdgeProgramHandle[] = [];
  // Clients that logged in (or failed to) or exited: the go waits for nobody else.
  const settled = new Set<number>();
  let loggedIn = 0;
  /** each client's requests so far, as it last said */
  const sent = new Map<number, { done: number; errors: number }>();
  let allReady: () => void = () => undefined;
  const everyoneReady = new Promise<void>((r) => {
    allReady = r;
  });
  // Whose turn it is to log in: LOGINS_AT_ONCE at a time, in the order their containers started.
  const waiting: { p: EdgeProgramHandle; index: number }[] = [];
  const loggingIn = new Set<number>();
  const pump = (): void => {
    while (loggingIn.size < LOGINS_AT_ONCE && waiting.length > 0) {
      const next = waiting.shift() as { p: EdgeProgramHandle; index: number };
      if (settled.has(next.index)) continue;
      loggingIn.add(next.index);
      next.p.send('login');
    }
  };
  const settle = (index: number): void => {
    if (settled.has(index)) return;
    settled.add(index);
    loggingIn.delete(index);
    pump();
    if (settled.size === users.length) allReady();
  };
  const t0 = performance.now();
  try {
    step(`starting ${users.length} client containers on the lab's edge network (gateway at ${origin})`);
    let lastShown = 0;
    await eachLimited(users, START_CONCURRENCY, async (u) => {
      if (opts.signal?.aborted)
        throw new TrustedMsError('INVALID_INPUT', 'stopped before the clients started');
      const job: ClientJob = {
        origin,
        ...(edgeCa === undefined ? {} : { edgeCaPem: edgeCa }),
        labId: lab.labId,
        posture: lab.posture,
        defences: lab.defences,
        user: {
          index: u.index,
          name: u.name,
          role: u.role,
          password: u.password,
          privateKeyPem: u.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
        },
        roles: opts.roles,
        services: [...opts.services],
        mix: opts.mix,
        durationMs: opts.durationMs,
        ...(perClientRate === undefined ? {} : { rate: perClientRate }),
        ...(opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs }),
        goWithinMs: READY_WITHIN_MS,
        loginRetryMs: 30_000,
      };
      const p = await edge.startProgram(lab, {
        name: `${PART_PREFIX}${u.index}`,
        program,
        input: job,
        stdin: true,
        memoryBytes: CLIENT_MEMORY_BYTES,
        deadlineMs: 2 * READY_WITHIN_MS + opts.durationMs + GRACE_MS + 30_000,
        onMessage: (m) => {
          const msg = m as ClientMessage;
          if (msg.event === 'progress') sent.set(u.index, { done: msg.done, errors: msg.errors });
          if (msg.event !== 'ready') return;
          if ((m as { loggedIn?: boolean }).loggedIn) loggedIn += 1;
          settle(u.index);
        },
      });
      programs.push(p);
      waiting.push({ p, index: u.index });
      pump();
      void p.exited.then(() => settle(u.index));
      if (programs.length === users.length || Date.now() - lastShown > 1000) {
        lastShown = Date.now();
        step(`  ${programs.length}/${users.length} client containers started, ${loggedIn} logged in`);
      }
    });
    const startMs = Math.round(performance.now() - t0);
    const loginStart = t0;
    const progress = setInterval(
      () =>
        opts.onProgress?.({
          phase: 'login',
          elapsedMs: performance.now() - loginStart,
          durationMs: 0,
          done: loggedIn,
          errors: settled.size - loggedIn,
          perSecond: 0,
        }),
      1000,
    );
    progress.unref();
    const stopped = new Promise<void>((r) =>
      opts.signal?.addEventListener('abort', () => r(), { once: true }),
    );
    await Promise.race([everyoneReady, sleepFor(READY_WITHIN_MS), stopped]);
    clearInterval(progress);
    const loginWindowMs = Math.round(performance.now() - t0);
    if (settled.size < users.length) {
      throw new TrustedMsError(
        'LAB_START_FAILED',
        `only ${settled.size} of ${users.length} client containers logged in or gave up in time`,
        { actions: ['see the lab: trusted-ms lab status', 'try fewer: --client-containers 50'] },
      );
    }
    step(`${loggedIn}/${users.length} clients logged in: go`);
    for (const p of programs) p.send('go');
    const sendStart = performance.now();
    let lastDone = 0;
    const ticking = setInterval(() => {
      const done = [...sent.values()].reduce((n, x) => n + x.done, 0);
      opts.onProgress?.({
        phase: 'requests',
        elapsedMs: Math.min(performance.now() - sendStart, opts.durationMs),
        durationMs: opts.durationMs,
        done,
        errors: [...sent.values()].reduce((n, x) => n + x.errors, 0),
        perSecond: done - lastDone,
      });
      lastDone = done;
    }, 1000);
    ticking.unref();
    // Mid-run, when every client is busy: what a client container costs.
    const memory = (async () => {
      await sleepFor(Math.min(opts.durationMs / 2, 5000));
      return (await eachLimited(programs, 16, (p) => p.memoryBytes())).filter(
        (x): x is number => x !== undefined,
      );
    })();
    const exits = await Promise.all(programs.map((p) => p.exited));
    clearInterval(ticking);
    const sampled = await memory;
    const results = exits.map(
      (e) => e.messages.find((m) => m.event === 'result') as ClientMessage | undefined,
    );
    const failed = exits
      .map((e) => e.messages.find((m) => m.event === 'failed') as { error?: string } | undefined)
      .filter((f) => f !== undefined);
    const done = results.filter(
      (r): r is Extract<ClientMessage, { event: 'result' }> => r?.event === 'result',
    );
    if (done.length === 0) {
      throw new TrustedMsError(
        'LAB_START_FAILED',
        `no client container reported figures${failed[0]?.error ? `: ${failed[0].error}` : ''}`,
      );
    }
    return {
      result: merge(lab, users.length, done, opts, loginWindowMs),
      containers: {
        count: users.length,
        startMs,
        memoryMiB: {
          mean: round1(sampled.reduce((a, b) => a + b, 0) / Math.max(1, sampled.length) / MiB),
          max: round1(Math.max(0, ...sampled) / MiB),
          sampled: sampled.length,
          limit: CLIENT_MEMORY_BYTES / MiB,
        },
      },
    };
  } finally {
    step(`removing the ${programs.length} client containers`);
    await eachLimited(programs, 16, (p) => p.remove()).catch(() => undefined);
    // Any the list missed (one created as a start failed): found by label.
    await edge.removePrograms(lab.labId, new RegExp(`^${PART_PREFIX}\\d+$`)).catch(() => 0);
  }
}

/** Removes the client containers of `lab` (found by label): a run's own cleanup, or a killed run's. */
export async function removeClientContainers(lab: LabState): Promise<number> {
  const { edge } = await runtimeFor(lab.runtime, lab);
  return (await edge?.removePrograms(lab.labId, new RegExp(`^${PART_PREFIX}\\d+$`))) ?? 0;
}

function merge(
  lab: LabState,
  clients: number,
  done: Extract<ClientMessage, { event: 'result' }>[],
  opts: ClientContainerOptions,
  loginWindowMs: number,
): LoadRunResult {
  const sum = (f: (r: (typeof done)[number]) => number) => done.reduce((n, r) => n + f(r), 0);
  const addAll = (maps: Record<string, number>[]) => {
    const out: Record<string, number> = {};
    for (const m of maps) for (const [k, v] of Object.entries(m)) out[k] = (out[k] ?? 0) + v;
    return out;
  };
  const histogram = mergeHistograms(done.map((r) => r.histogram));
  const loginHist = mergeHistograms(done.map((r) => r.loginHistogram));
  const durationMs = Math.max(...done.map((r) => r.figures.durationMs));
  const requests = histogram.totalCount;
  const loginsOk = sum((r) => r.logins.ok);
  const services = opts.services
    .map((s) => {
      const encoded = done
        .map((r) => r.serviceHistograms[s.name])
        .filter((e): e is string => e !== undefined);
      if (encoded.length === 0) return undefined;
      const h = mergeHistograms(encoded);
      const errors = done.reduce(
        (n, r) => n + (r.figures.services.find((x) => x.service === s.name)?.errors ?? 0),
        0,
      );
      return { service: s.name, requests: h.totalCount, errors, latencyMs: summarize(h) };
    })
    .filter((s) => s !== undefined);
  return {
    posture: lab.posture,
    mode: opts.rate === undefined ? 'closed-loop' : 'constant-rate',
    ...(opts.rate === undefined ? {} : { targetRate: opts.rate }),
    clients,
    durationMs,
    requests,
    ok: sum((r) => r.figures.ok),
    errors: addAll(done.map((r) => r.figures.errors)),
    reqPerSec: Math.round((requests * 1000) / Math.max(1, durationMs)),
    latencyMs: summarize(histogram),
    logins: {
      // Clients that never reported are logins that did not count: attempted is every client.
      attempted: clients,
      ok: loginsOk,
      retries: sum((r) => r.logins.retries),
      errors: addAll(done.map((r) => r.logins.errors)),
      // The host's window: from the first container created to the last client logged in.
      durationMs: loginWindowMs,
      perSecond: Math.round(((loginsOk * 1000) / Math.max(1, loginWindowMs)) * 10) / 10,
      latencyMs: summarize(loginHist),
    },
    services,
    histogram,
  };
}

function sleepFor(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}
