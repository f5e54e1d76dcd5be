import type { FastifyPluginAsync } from 'fastify';
import { isAttested } from '../../../defences/attestation-table.js';
import { TrustedMsError } from '../../../errors.js';
import { issueServiceCertificate } from '../../../pki/identity.js';
import { identityValidity, reportAndIssue } from '../attestation-report.js';
import type { SecurityContext } from '../context.js';
import { refuseNonServiceName } from '../registry.js';
import { NAME } from '../schemas.js';

/** Admin (behind the lab token, see admin.ts): registering services, their measurements, identities. */
export const adminServiceRoutes: FastifyPluginAsync<SecurityContext> = async (admin, ctx) => {
  admin.post<{
    Body: {
      reports: { name: string; hash: string; launch?: string; ends?: string }[];
      issueIdentity?: boolean;
    };
  }>(
    '/v1/admin/attestations',
    {
      schema: {
        body: {
          type: 'object',
          required: ['reports'],
          properties: {
            reports: {
              type: 'array',
              maxItems: 200,
              items: {
                type: 'object',
                required: ['name', 'hash'],
                properties: {
                  name: NAME,
                  hash: { type: 'string', maxLength: 128 },
                  launch: { type: 'string', minLength: 1, maxLength: 128 },
                  ends: { type: 'string', minLength: 1, maxLength: 128 },
                },
              },
            },
            issueIdentity: { type: 'boolean' },
          },
        },
      },
    },
    async (request) =>
      reportAndIssue(
        ctx,
        request.body.reports.map((r) => ({ ...r, by: 'runtime' as const })),
        request.body.issueIdentity === true,
      ),
  );

  admin.post<{ Body: { services: { name: string; hash: string }[] } }>(
    '/v1/admin/services/register',
    {
      schema: {
        body: {
          type: 'object',
          required: ['services'],
          properties: {
            services: {
              type: 'array',
              maxItems: 200,
              items: {
                type: 'object',
                required: ['name', 'hash'],
                properties: { name: NAME, hash: { type: 'string', maxLength: 128 } },
              },
            },
          },
        },
      },
    },
    async (request) => {
      const services = await ctx.registry.register(request.body.services);
      await ctx.audit({
        actor: 'admin',
        action: 'service.register',
        outcome: 'ok',
        detail: { names: services.map((s) => s.name) },
      });
      await ctx.onAttestation?.(ctx.registry.list()).catch(() => undefined);
      await ctx.revocations.attestationsChanged();
      return { services };
    },
  );

  admin.post<{ Params: { name: string } }>('/v1/admin/services/:name/identity', async (request) => {
    refuseNonServiceName(request.params.name);
    const status = ctx.registry.get(request.params.name);
    if (!ctx.ca)
      throw new TrustedMsError(
        'POSTURE_MISMATCH',
        'identities exist only with links:mtls (the trusted posture)',
      );
    // Asking for the identity of a service that is unknown or not attested is the caller's
    // mistake (4xx), not an outage: SERVICE_UNTRUSTED is a 503 (found by the fuzz suite).
    if (status === undefined) {
      throw new TrustedMsError(
        'SERVICE_NOT_FOUND',
        `no service named ${request.params.name.slice(0, 64)} is registered`,
      );
    }
    if (!isAttested(status.state)) {
      throw new TrustedMsError(
        'ATTESTATION_MISMATCH',
        `${request.params.name.slice(0, 64)} has not passed attestation`,
      );
    }
    if (ctx.revocations.quarantined(status.name)) {
      throw new TrustedMsError('PEER_QUARANTINED', `${status.name} is quarantined: it gets no identity`, {
        actions: [`trusted-ms service release ${status.name}`],
      });
    }
    return issueServiceCertificate(ctx.ca, { name: request.params.name, ...identityValidity(ctx) });
  });
};
