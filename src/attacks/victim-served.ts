import { setTimeout as sleep } from 'node:timers/promises';
import { callService } from '../client/call.js';
import { login } from '../client/login.js';
import type { Session } from '../client/session.js';
import { TrustedMsError } from '../errors.js';
import type { LabState } from '../kernel/lab-state.js';
import { TARGET } from './target.js';
import type { LabUser } from './types.js';

/** How long a lab may take to serve the victim again after a revert (a feed's reconnect and poll). */
export const SERVED_AGAIN_WITHIN_MS = 20_000;

/**
 * A revert is done only once the lab serves its users again: the victim reads the target through
 * the gateway. A revert that changed what the parts hold (a revocation lifted, the security service
 * restarted) is not in force until they took it: `user reinstate` answers after a bounded wait for
 * the parts' confirmations, so a gateway whose feed was reconnecting may still hold the old list
 * (CI on fdc03b5: spoofed-security's revert had lifted the victim's revocation, and the next
 * scenario's first read was refused TICKET_REVOKED and judged inconclusive, twice). Checked, the
 * failure is the revert's, where it belongs, and later scenarios are not judged on a changed lab.
 *
 * `session` is tried first (one request, the usual case); once refused, the victim logs in anew
 * (a scenario may have revoked its earlier tickets for good: a reinstatement does not bring them
 * back). Returns how long it took and the session that was served.
 */
export async function untilVictimServed(
  lab: Pick<LabState, 'labId' | 'posture' | 'defences' | 'gatewayUrl'>,
  victim: LabUser,
  opts: { withinMs?: number; session?: Session } = {},
): Promise<{ ms: number; session: Session }> {
  const withinMs = opts.withinMs ?? SERVED_AGAIN_WITHIN_MS;
  const start = performance.now();
  let session = opts.session;
  let last = 'no answer';
  for (;;) {
    try {
      session ??= (await login(lab, victim.name, victim.password, victim.privateKey)).session;
      const res = await callService(session, {
        gatewayUrl: lab.gatewayUrl,
        service: TARGET.service,
        path: TARGET.path,
      });
      if (res.status === 200 && JSON.stringify(res.body).includes(TARGET.marker)) {
        return { ms: Math.round(performance.now() - start), session };
      }
      const code = (res.body as { code?: unknown } | null)?.code;
      last = `${res.status}${typeof code === 'string' ? ` ${code.slice(0, 64)}` : ''}`;
    } catch (err) {
      last = err instanceof TrustedMsError ? err.code : 'no answer';
    }
    session = undefined;
    if (performance.now() - start > withinMs) {
      throw new TrustedMsError(
        'LAB_NOT_RESTORED',
        `the victim was not served through the gateway within ${withinMs / 1000} s of the revert (last: ${last})`,
      );
    }
    await sleep(250);
  }
}

/** Whether the lab has the target service the check reads (every lab of 2 services or more). */
export function hasTarget(lab: Pick<LabState, 'parts'>): boolean {
  return lab.parts.some((p) => p.kind === 'service' && p.name === TARGET.service);
}
