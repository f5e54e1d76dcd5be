import { randomBytes } from 'node:crypto';
import { login } from '../../client/login.js';
import type { Session } from '../../client/session.js';
import { createProof, PROOF_HEADER } from '../../protocol/proof.js';
import { decodeTicketUnverified } from '../../protocol/ticket.js';
import { attempt } from '../http.js';
import { gatewayTargetPath, gatewayTargetUrl, TARGET } from '../target.js';
import { judgeByData, type Scenario } from '../types.js';

/** The attacker captured the victim's session ticket (not the key) and uses it from its own client. */
export const stolenTicket: Scenario = {
  id: 'masquerade.stolen-ticket',
  title: "Use the victim's captured session ticket from another client",
  paperAttack: 1,
  technique: 'T1550',
  description:
    "The victim logs in; the attacker captures the victim's session credential (the bearer ticket in paper and trusted, the basic header in none) and sends it from its own client to read a record only the victim may read. In trusted the attacker also tries a proof of possession made with a guessed session key.",
  evidence: 'The status of each read through the gateway: succeeded when the record comes back.',
  expected: { none: 'succeeded', paper: 'succeeded', trusted: 'blocked' },

  async setup(ctx) {
    ctx.scratch.session = (
      await login(ctx.lab, ctx.victim.name, ctx.victim.password, ctx.victim.privateKey)
    ).session;
  },

  async detonate(ctx) {
    const session = ctx.scratch.session as Session;
    const url = gatewayTargetUrl(ctx.lab);
    if (ctx.defences.request === 'basic') {
      await attempt(ctx, {
        action: "read the victim-only record with the victim's captured basic header",
        url,
        headers: { authorization: `Basic ${session.basic ?? ''}` },
        dispatcher: ctx.client,
        marker: TARGET.marker,
      });
      return;
    }
    const stolen = { authorization: `Bearer ${session.ticket ?? ''}` };
    await attempt(ctx, {
      action: "read the victim-only record with the victim's ticket alone",
      url,
      headers: stolen,
      dispatcher: ctx.client,
      marker: TARGET.marker,
    });
    if (ctx.defences.request === 'bound') {
      const jti = decodeTicketUnverified(session.ticket as string).claims.jti;
      const guessed = createProof({
        sessionKey: randomBytes(32),
        method: 'GET',
        path: gatewayTargetPath(),
        jti,
      });
      await attempt(ctx, {
        action: "read it with the victim's ticket and a proof made with a guessed session key",
        url,
        headers: { ...stolen, [PROOF_HEADER]: guessed },
        dispatcher: ctx.client,
        marker: TARGET.marker,
      });
    }
  },

  judge: judgeByData,
};
