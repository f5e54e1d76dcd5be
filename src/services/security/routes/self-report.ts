import type { FastifyPluginAsync } from 'fastify';
import { TrustedMsError } from '../../../errors.js';
import { reportAndIssue } from '../attestation-report.js';
import type { SecurityContext } from '../context.js';

/**
 * attestation:self (the paper posture): a service tells its own hash, with its own credential (or
 * the CLI with the lab token); a service cannot report another's.
 */
export const selfReportRoutes: FastifyPluginAsync<SecurityContext> = async (app, ctx) => {
  app.post<{ Params: { name: string }; Body: { hash: string } }>(
    '/v1/services/:name/self-report',
    {
      schema: {
        body: {
          type: 'object',
          required: ['hash'],
          additionalProperties: false,
          properties: { hash: { type: 'string', maxLength: 128 } },
        },
      },
    },
    async (request) => {
      ctx.requireSelfReporter(request, request.params.name);
      if (!ctx.registry.acceptsSelfReports()) {
        throw new TrustedMsError(
          'POSTURE_MISMATCH',
          'self-reported hashes count only with attestation:self (the paper posture)',
        );
      }
      const { services } = await reportAndIssue(
        ctx,
        [{ name: request.params.name, hash: request.body.hash, by: 'self' }],
        false,
      );
      return services[0];
    },
  );
};
