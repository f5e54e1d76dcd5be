import { authHeaders } from '../../client/call.js';
import { login } from '../../client/login.js';
import type { Session } from '../../client/session.js';
import { attempt, refusedStep } from '../http.js';
import { gatewayTargetPath, gatewayTargetUrl, TARGET } from '../target.js';
import { judgeByData, type Scenario } from '../types.js';

/** The attacker knows the victim's password but holds only its own private key, not the victim's. */
export const stolenPassword: Scenario = {
  id: 'masquerade.stolen-password',
  title: "Log in as the victim with a stolen password but without the victim's private key",
  paperAttack: 1,
  technique: 'T1078',
  description:
    "The attacker has the victim's password (phished, reused, read from a leaked .htpasswd) and logs in as the victim from its own client, answering the challenge with the attacker's own key. It then reads a customer record only the victim may read.",
  evidence:
    "The login's answer (refusal code) and the status of the read through the gateway: succeeded when the record comes back.",
  expected: { none: 'succeeded', paper: 'blocked', trusted: 'blocked' },

  async detonate(ctx) {
    let session: Session;
    try {
      session = (await login(ctx.lab, ctx.victim.name, ctx.victim.password, ctx.attacker.privateKey)).session;
    } catch (err) {
      refusedStep(
        ctx,
        "log in as the victim with the password and the attacker's key",
        `POST ${ctx.lab.gatewayUrl}/auth/*`,
        err,
      );
      return;
    }
    await attempt(ctx, {
      action: 'read the victim-only record through the gateway with the session obtained',
      url: gatewayTargetUrl(ctx.lab),
      headers: authHeaders(session, 'GET', gatewayTargetPath(), undefined),
      dispatcher: ctx.client,
      marker: TARGET.marker,
    });
  },

  judge: judgeByData,
  // Nothing to undo: a refused login leaves no state, and the lock-out counts wrong passwords only.
};
