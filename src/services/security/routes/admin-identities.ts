import type { FastifyPluginAsync } from 'fastify';
import { gatewayServerNames } from '../../../defences/edge.js';
import { TrustedMsError } from '../../../errors.js';
import { issueServiceCertificate } from '../../../pki/identity.js';
import { identityValidity } from '../attestation-report.js';
import type { SecurityContext } from '../context.js';

/**
 * Admin (behind the lab token, see admin.ts): the gateway's and the watchman's identities, renewed by the watchman at
 * half-life. The gateway is not a measured service (the services' identities come with a trusted
 * measurement, `POST /v1/admin/attestations` with `issueIdentity`), so this is all it takes.
 */
export const adminIdentityRoutes: FastifyPluginAsync<SecurityContext> = async (admin, ctx) => {
  // The watchman's own identity (it tells a part from a process on its port by certificate) is
  // renewed the same way: it is not measured either.
  for (const kind of ['gateway', 'supervisor'] as const) {
    admin.post(`/v1/admin/identities/${kind}`, async () => {
      if (!ctx.ca) {
        throw new TrustedMsError(
          'POSTURE_MISMATCH',
          'identities exist only with links:mtls (the trusted posture)',
        );
      }
      const serverNames =
        kind === 'gateway' ? gatewayServerNames(ctx.defences.edge, ctx.gatewayUrl) : undefined;
      const identity = await issueServiceCertificate(ctx.ca, {
        name: kind,
        kind,
        ...identityValidity(ctx),
        // edge:tls: the renewed certificate is the one users' clients check too
        ...(serverNames ? { serverNames } : {}),
      });
      await ctx.audit({
        actor: 'admin',
        action: 'identity.issue',
        target: kind,
        outcome: 'ok',
        detail: { notAfter: identity.notAfter.toISOString() },
      });
      return identity;
    });
  }
};
