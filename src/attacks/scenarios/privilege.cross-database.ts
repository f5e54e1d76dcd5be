import { authHeaders } from '../../client/call.js';
import { login } from '../../client/login.js';
import type { Session } from '../../client/session.js';
import { attempt } from '../http.js';
import { directTargetUrl, gatewayTargetPath, gatewayTargetUrl, TARGET } from '../target.js';
import { judgeByData, type Scenario } from '../types.js';

/** A logged-in low-role user reads a database its role does not grant, via the gateway and around it. */
export const crossDatabase: Scenario = {
  id: 'privilege.cross-database',
  title: 'A low-role user reads a database outside its role, through the gateway and directly',
  paperAttack: 2,
  technique: 'T1078',
  description:
    "The attacker logs in with its own account (role analyst, no grant on `customers`) and reads a customer record: first through the gateway with its own credentials, then straight at the customers service's address, bypassing the gateway. There it sends what the service would accept: in none the identity headers the gateway would have added (`x-tms-user/role/perms`, claiming a grant on customers), in paper and trusted its own ticket.",
  evidence:
    'The status of the read through the gateway and of the direct read at the service (a TLS handshake refused counts as no answer): succeeded when the record comes back.',
  expected: { none: 'succeeded', paper: 'blocked', trusted: 'blocked' },

  async setup(ctx) {
    ctx.scratch.session = (
      await login(ctx.lab, ctx.attacker.name, ctx.attacker.password, ctx.attacker.privateKey)
    ).session;
  },

  async detonate(ctx) {
    const session = ctx.scratch.session as Session;
    await attempt(ctx, {
      action: "read a customers record through the gateway with the attacker's own credentials",
      url: gatewayTargetUrl(ctx.lab),
      headers: authHeaders(session, 'GET', gatewayTargetPath(), undefined),
      dispatcher: ctx.client,
      marker: TARGET.marker,
    });
    const headers: Record<string, string> =
      ctx.defences.request === 'basic'
        ? {
            'x-tms-user': ctx.attacker.name,
            'x-tms-role': ctx.attacker.role,
            'x-tms-perms': JSON.stringify({ [TARGET.database]: ['read'] }),
          }
        : { authorization: `Bearer ${session.ticket ?? ''}` };
    await attempt(ctx, {
      action:
        ctx.defences.request === 'basic'
          ? 'read it directly at the service, sending the identity headers the gateway would add'
          : "read it directly at the service with the attacker's own ticket",
      url: directTargetUrl(ctx.lab),
      headers,
      dispatcher: ctx.client,
      marker: TARGET.marker,
    });
  },

  judge: judgeByData,
};
