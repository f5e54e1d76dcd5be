import { setTimeout as sleep } from 'node:timers/promises';
import { TrustedMsError } from '../errors.js';
import { adminChannel } from '../kernel/admin-channel.js';
import { jsonRequest } from '../kernel/http-client.js';
import { type LabState, readLabState } from '../kernel/lab-state.js';
import { ownerAlive } from '../kernel/owner-process.js';

/**
 * How long a CLI command waits for the security service of a lab that runs to answer: a restart
 * by the watchman (1 s of back-off, then its start) fits in it on a loaded machine.
 */
const ANSWER_WAIT_MS = 15_000;
const HEALTH_TIMEOUT_MS = 1500;

/**
 * Who writes the lab's store for a CLI command: the security service while a lab runs (it is then
 * the store's only writer, and holds what it serves in memory: revocations are published from what
 * it loaded), the CLI itself under the store's file lock when no lab runs, or when nothing of the
 * lab's is left to run or start the security service (it and the watchman both dead).
 *
 * Anything between is waited for, then refused, never written around. The red teams did that twice:
 * a security service stopped (SIGSTOP), and one killed while the watchman started it again; the
 * CLI's own write, on its own clock, came after the new service had loaded the store, so a revoked
 * ticket kept working (`user revoke` said "the lab is not running"), and a removed user's record,
 * pruned on the CLI's clock 50 h ahead, let that user's old ticket work again.
 */
export async function storeWriter(
  home: string,
  state: LabState | undefined,
): Promise<'security-service' | 'store'> {
  if (state === undefined) return 'store';
  // trusted: only the real one answers (its identity proven on the control plane); a fake on the
  // plain port is not taken for the security service running.
  const answers = async () => {
    try {
      if (state.controlPlaneUrl === undefined) {
        await jsonRequest(`${state.securityUrl}/healthz`, { timeoutMs: HEALTH_TIMEOUT_MS });
      } else {
        await (await adminChannel(home, state)).call('/healthz', { timeoutMs: HEALTH_TIMEOUT_MS });
      }
      return true;
    } catch {
      return false;
    }
  };
  if (await answers()) return 'security-service';
  // A part with no pid here is a container: it may run, as far as this command can tell.
  const mayRun = async (pid: number | undefined) => pid === undefined || (await ownerAlive(pid, undefined));
  const until = Date.now() + ANSWER_WAIT_MS;
  for (;;) {
    // The watchman names the part it started in the state file: read it again each time.
    const current = await readLabState(home);
    if (current === undefined) return 'store'; // taken down meanwhile
    const pidOf = (kind: string) => current.parts.find((p) => p.kind === kind)?.pid;
    const security = pidOf('security');
    const watchman = pidOf('supervisor');
    if (!(await mayRun(security)) && (watchman === undefined || !(await ownerAlive(watchman, undefined)))) {
      return 'store';
    }
    if (Date.now() >= until) break;
    await sleep(500);
    if (await answers()) return 'security-service';
  }
  throw new TrustedMsError(
    'SERVICE_UNAVAILABLE',
    `the lab's security service has not answered for ${ANSWER_WAIT_MS / 1000} s, but it or the watchman that restarts it still runs; while a lab runs its security service is the store's only writer, so nothing was changed`,
    { actions: ['try again in a moment', 'or take the lab down first: trusted-ms lab down'] },
  );
}
