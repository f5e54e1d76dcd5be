import { TrustedMsError } from '../errors.js';
import { jsonRequest } from '../kernel/http-client.js';
import type { LabState } from '../kernel/lab-state.js';
import { ownerAlive } from '../kernel/owner-process.js';

/** How long a running security service may take to answer before the command gives up. */
const ANSWER_WAIT_MS = 10_000;
const HEALTH_TIMEOUT_MS = 1500;

/**
 * Who writes the lab's store for a CLI command: the security service while it runs (it is then the
 * store's only writer, and holds its data in memory), the CLI itself under the store's file lock
 * when no lab runs or its security service is gone (dead; the watchman's next start reads what the
 * CLI wrote).
 *
 * A security service that runs but does not answer (busy, stopped) is waited for, then refused,
 * never written around: the red team stopped it (SIGSTOP), and the CLI's direct write, made on its
 * own clock and lost to the service's next write, let a removed user's old ticket work again, while
 * `user revoke` said the lab was not running and the revoked ticket kept working.
 */
export async function storeWriter(state: LabState | undefined): Promise<'security-service' | 'store'> {
  if (state === undefined) return 'store';
  const answers = () =>
    jsonRequest(`${state.securityUrl}/healthz`, { timeoutMs: HEALTH_TIMEOUT_MS }).then(
      () => true,
      () => false,
    );
  if (await answers()) return 'security-service';
  const pid = state.parts.find((p) => p.kind === 'security')?.pid;
  // A container (no pid here) or a process that is gone: nothing holds the store but its file lock.
  if (pid === undefined || !(await ownerAlive(pid, undefined))) return 'store';
  const until = Date.now() + ANSWER_WAIT_MS;
  while (Date.now() < until) {
    await new Promise((r) => setTimeout(r, 500));
    if (await answers()) return 'security-service';
    if (!(await ownerAlive(pid, undefined))) return 'store';
  }
  throw new TrustedMsError(
    'SERVICE_UNAVAILABLE',
    `the lab's security service (pid ${pid}) runs but has not answered for ${ANSWER_WAIT_MS / 1000} s; it is the store's only writer while it runs, so nothing was changed`,
    { actions: ['try again in a moment', 'or take the lab down first: trusted-ms lab down'] },
  );
}
