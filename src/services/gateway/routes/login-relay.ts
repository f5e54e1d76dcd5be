import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { GatewayLimits } from '../../../defences/limits.js';
import { RATE_WAIT_HEADER } from '../../../defences/rate-limit.js';
import { CLIENT_ADDRESS_HEADER } from '../../../kernel/client-address.js';
import type { Upstream } from '../upstream.js';
import { loginStepRoutes } from './login-steps.js';

export interface LoginRelayDeps {
  /** the security service */
  auth: Upstream;
  /** the login-flood defence: logins in flight, their rate, their failures, per address */
  limits: GatewayLimits;
  /** vouches for the client address the relayed step carries; without it, none is sent */
  labToken?: string;
  /** links:mtls: `auth` is the control plane, where the gateway's certificate vouches instead */
  relayVouchedByCertificate?: boolean;
}

const EMPTY = Buffer.alloc(0);

/**
 * login:paper, login:challenge: the login steps relayed to the security service, which in Docker is
 * not reachable otherwise, and here seen with the real client address (the login-flood defence).
 */
export const loginRelayRoutes: FastifyPluginAsync<LoginRelayDeps> = async (app, deps) => {
  const { auth, limits } = deps;

  const relayAuthStep = async (request: FastifyRequest, reply: FastifyReply) => {
    await limits.admitLogin(request.ip);
    const body = (request.body as Buffer | undefined) ?? EMPTY;
    const step = /^(\/v1)?\/auth\/verify/.test(request.url) ? 'verify' : 'challenge';
    const contentType = request.headers['content-type'];
    const headers: Record<string, string> = {
      'content-type': typeof contentType === 'string' ? contentType : 'application/json',
    };
    // The security service limits logins per client address, and sees only ours: tell it the real
    // one, vouched for by the lab token (why that and not the socket: ../../../kernel/client-address.ts).
    if (deps.labToken !== undefined) {
      headers.authorization = `Bearer ${deps.labToken}`;
      headers[CLIENT_ADDRESS_HEADER] = request.ip;
    } else if (deps.relayVouchedByCertificate === true) {
      headers[CLIENT_ADDRESS_HEADER] = request.ip;
    }
    const res = await auth.request({
      method: 'POST',
      path: `/v1/auth/${step}`,
      headers,
      ...(body.length > 0 ? { body } : {}),
    });
    if (res.status >= 400 && res.status < 500) limits.loginFailed(request.ip);
    const resType = res.headers['content-type'];
    reply.code(res.status);
    if (resType !== undefined) reply.header('content-type', Array.isArray(resType) ? resType[0] : resType);
    return reply.send(res.body);
  };

  loginStepRoutes(app, async (request: FastifyRequest, reply: FastifyReply) => {
    const slot = await limits.loginSlot(request.ip);
    // Said on a refusal too: the step was held back before it was refused.
    if (slot.waitedMs > 0) reply.header(RATE_WAIT_HEADER, String(slot.waitedMs));
    try {
      return await relayAuthStep(request, reply);
    } finally {
      slot.release();
    }
  });
};
