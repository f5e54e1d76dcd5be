import { open } from 'node:fs/promises';
import type { Agent } from 'undici';
import { TrustedMsError } from '../errors.js';
import { jsonRequest } from '../kernel/http-client.js';
import type { PartState } from '../kernel/lab-state.js';
import type { Runtime } from './runtimes/runtime.js';

/**
 * How the CLI knows a part it started is ready (testcontainers' wait strategies):
 * - `healthz`: its `/healthz` answers, through `dispatcher` when the part accepts lab-CA clients
 *   only (mTLS);
 * - `log-line`: its log says it listens. For a part not reachable from this host (a service on the
 *   lab's internal network), or a program that is not the kit's and has no /healthz. With `since`,
 *   only the log file from that offset on counts: a restarted part's earlier runs wrote there too.
 */
export type Readiness = { kind: 'healthz'; dispatcher?: Agent } | { kind: 'log-line'; since?: number };

const LISTENING = / listening on /;

/** The strategy for a part the kit started: its health endpoint, or its log when it is not reachable from here. */
export function defaultReadiness(part: PartState, dispatcher?: Agent): Readiness {
  if (part.internal) return { kind: 'log-line' };
  return dispatcher === undefined ? { kind: 'healthz' } : { kind: 'healthz', dispatcher };
}

/**
 * Until the part is ready by `readiness`, its process dies, or time runs out (LAB_START_FAILED
 * with its last log lines). A dispatcher given is closed at the end.
 */
export async function waitReady(
  runtime: Runtime,
  part: PartState,
  readiness: Readiness,
  timeoutMs: number,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let last = '';
  try {
    while (performance.now() < deadline) {
      const { ready, why, pollMs } = await check(runtime, part, readiness);
      if (ready) return;
      last = why;
      if (!(await runtime.isAlive(part))) break;
      await new Promise((r) => setTimeout(r, pollMs));
    }
  } finally {
    if (readiness.kind === 'healthz') await readiness.dispatcher?.close();
  }
  const tail = await runtime.logTail(part, 15);
  throw new TrustedMsError(
    'LAB_START_FAILED',
    `${part.name} did not become healthy (${last || 'exited'})${tail ? `\n${tail}` : ''}`,
    { actions: [`see its log: ${part.logFile}`] },
  );
}

/** `waitReady` with the part's default strategy. */
export function waitHealthy(
  runtime: Runtime,
  part: PartState,
  timeoutMs: number,
  dispatcher?: Agent,
): Promise<void> {
  return waitReady(runtime, part, defaultReadiness(part, dispatcher), timeoutMs);
}

async function check(
  runtime: Runtime,
  part: PartState,
  readiness: Readiness,
): Promise<{ ready: boolean; why: string; pollMs: number }> {
  if (readiness.kind === 'log-line') {
    const text =
      readiness.since === undefined
        ? await runtime.logTail(part, 50)
        : await logFileFrom(part.logFile, readiness.since);
    return { ready: LISTENING.test(text), why: 'no "listening" line in its log yet', pollMs: 100 };
  }
  try {
    await jsonRequest(`${part.url}/healthz`, {
      timeoutMs: 1000,
      ...(readiness.dispatcher ? { dispatcher: readiness.dispatcher } : {}),
    });
    return { ready: true, why: '', pollMs: 0 };
  } catch (err) {
    // A refused connection (and, for a process, a liveness check) costs next to nothing: poll often,
    // so a part is seen ~25 ms after it listens. A container's liveness is an engine call: 100 ms.
    return { ready: false, why: (err as Error).message, pollMs: runtime.kind === 'process' ? 25 : 100 };
  }
}

/** Up to 64 KiB of a log file from `from` on; empty while it does not exist. */
async function logFileFrom(file: string, from: number): Promise<string> {
  const fh = await open(file, 'r').catch(() => undefined);
  if (fh === undefined) return '';
  try {
    const { size } = await fh.stat();
    const buf = Buffer.alloc(Math.max(0, Math.min(size - from, 64 * 1024)));
    await fh.read(buf, 0, buf.length, from);
    return buf.toString('utf8');
  } finally {
    await fh.close();
  }
}
