import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Session } from '../../client/session.js';
import { attackerCertificate, LINK } from '../mitm.js';
import { compromiseProcess, undoPlant, victimCall, victimSession } from '../plant.js';
import { sinkEvidence, sinkMark, sinkUrlForParts } from '../sink.js';
import { judgeByData, type Scenario } from '../types.js';

/** A rogue service takes the accounts service's place and collects the credentials callers hand it. */
export const impersonation: Scenario = {
  id: 'malicious-service.impersonation',
  title: 'A rogue service answers in place of a real one',
  paperAttack: 5,
  technique: 'T1557',
  description:
    "The attacker stops the accounts service and runs a rogue program in its place, at its address (src/attacks/payloads/rogue-service.ts): it answers with a forged account and sends the credentials of every caller to the attacker's sink. The victim asks customers for its overview (customers calls accounts with the victim's credentials) and reads accounts through the gateway. The paper checks a service's code once, by its own report at start-up, and nothing proves who answers at a service's address later: callers hand the rogue the victim's bearer ticket. In trusted every link is mTLS with SPIFFE names from the lab CA; the rogue, with only a certificate for accounts from its own CA, is refused at the handshake by customers and by the gateway. Revert starts the real accounts service again.",
  evidence:
    "What reached the attacker's sink from the rogue (succeeded when the victim's credential is there; handshakes refused by callers are reported there too), and what customers and the gateway got.",
  expected: { none: 'succeeded', paper: 'succeeded', trusted: 'blocked' },

  async setup(ctx) {
    ctx.scratch.mark = await sinkMark(ctx.lab);
    await victimSession(ctx);
    await compromiseProcess(ctx, LINK.callee, 'rogue', async (dir) => {
      let tls: { certFile: string; keyFile: string } | undefined;
      if (ctx.defences.links === 'mtls') {
        const own = await attackerCertificate(ctx, LINK.callee);
        tls = { certFile: join(dir, 'cert.pem'), keyFile: join(dir, 'key.pem') };
        await writeFile(tls.certFile, own.certPem);
        await writeFile(tls.keyFile, own.keyPem, { mode: 0o600 });
      }
      return {
        sink: sinkUrlForParts(ctx.lab),
        rogue: {
          database: LINK.database,
          forged: { id: 'acc-rogue', owner: 'mallory', status: 'active' },
          ...(tls ? { tls } : {}),
        },
      };
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
    const session = ctx.scratch.victimSession as Session;
    const credential =
      ctx.defences.request === 'basic' ? `"x-tms-user":"${ctx.victim.name}"` : (session.ticket ?? '');
    await sinkEvidence(ctx, ctx.scratch.mark as number, credential, "the victim's credential at the sink");
  },

  judge: judgeByData,
  revert: undoPlant,
};
