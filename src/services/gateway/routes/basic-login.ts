import type { FastifyPluginAsync } from 'fastify';
import type { BasicAtGateway } from '../../../defences/request/gateway-basic.js';
import { TrustedMsError } from '../../../errors.js';
import { loginStepRoutes } from './login-steps.js';

export interface BasicLoginDeps {
  /** request:basic, whose password check and its cache (src/defences/request/) the route asks */
  basic: BasicAtGateway;
}

/**
 * login:basic: `GET /auth/basic` checks HTTP basic credentials, so a typo shows at login rather
 * than at the first call; the login steps of the other logins answer that there are none.
 */
export const basicLoginRoutes: FastifyPluginAsync<BasicLoginDeps> = async (app, { basic }) => {
  app.get('/auth/basic', async (request) => {
    const p = await basic.principal(request.headers.authorization);
    return { user: p.user, role: p.role };
  });
  loginStepRoutes(app, async () => {
    throw new TrustedMsError('ROUTE_NOT_FOUND', "this lab's login is HTTP basic: there is no challenge");
  });
};
