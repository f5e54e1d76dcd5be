import type { FastifyPluginAsync } from 'fastify';
import { TrustedMsError } from '../../../errors.js';
import { issueServiceCertificate } from '../../../pki/identity.js';
import { identityLifetime } from '../attestation-report.js';
import type { SecurityContext } from '../context.js';

/**
 * Admin (behind the lab token, see admin.ts): the gateway's identity, renewed by the watchman at
 * half-life. The gateway is not a measured service (the services' identities come with a trusted
 * measurement, `POST /v1/admin/attestations` with `issueIdentity`), so this is all it takes.
 */
export const adminIdentityRoutes: FastifyPluginAsync<SecurityContext> = async (admin, ctx) => {
  admin.post('/v1/admin/identities/gateway', async () => {
    if (!ctx.ca) {
      throw new TrustedMsError(
        'POSTURE_MISMATCH',
        'identities exist only with links:mtls (the trusted posture)',
      );
    }
    const identity = await issueServiceCertificate(ctx.ca, {
      name: 'gateway',
      kind: 'gateway',
      ...identityLifetime(ctx),
    });
    await ctx.audit({
      actor: 'admin',
      action: 'identity.issue',
      target: 'gateway',
      outcome: 'ok',
      detail: { notAfter: identity.notAfter.toISOString() },
    });
    return identity;
  });
};
