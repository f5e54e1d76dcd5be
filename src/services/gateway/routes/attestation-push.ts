import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyPluginAsync } from 'fastify';
import { type AttestationTable, parseAttestationEntries } from '../../../defences/attestation-table.js';
import { bearer } from '../../../defences/request/types.js';
import { TrustedMsError } from '../../../errors.js';

export interface AttestationPushDeps {
  /** the table the attestation gate reads */
  attestation: AttestationTable;
  /** the lab token the security service pushes with; without it, pushes are refused */
  labToken?: string;
  /**
   * links:mtls, where the gateway holds no lab token: a push is only a prompt, whoever sends it, to
   * fetch the table again from the security service over the control plane (its body is ignored).
   */
  refreshAttestation?: () => Promise<void>;
  /** feeds:signed: a push only prompts a fetch even from a holder of the lab token (its table is not signed) */
  pushPromptsOnly?: boolean;
}

/**
 * `POST /internal/attestations`: the security service replaces the gateway's attestation table
 * (with the lab token), or prompts the gateway to fetch it (with certificates).
 */
export const attestationPushRoutes: FastifyPluginAsync<AttestationPushDeps> = async (app, deps) => {
  const labTokenDigest = deps.labToken ? sha256(deps.labToken) : undefined;
  const { refreshAttestation } = deps;

  app.post('/internal/attestations', async (request) => {
    if ((labTokenDigest === undefined || deps.pushPromptsOnly === true) && refreshAttestation !== undefined) {
      await refreshAttestation();
      return { ok: true, refreshed: true };
    }
    const given = bearer(request.headers.authorization);
    if (
      labTokenDigest === undefined ||
      given === undefined ||
      !timingSafeEqual(sha256(given), labTokenDigest)
    ) {
      throw new TrustedMsError('ADMIN_TOKEN_INVALID', 'lab token invalid');
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse((request.body as Buffer | undefined)?.toString('utf8') ?? '');
    } catch {
      throw new TrustedMsError('INVALID_INPUT', 'body is not JSON');
    }
    const services = parseAttestationEntries((parsed as { services?: unknown } | null)?.services);
    deps.attestation.replace(services);
    return { ok: true, services: services.length };
  });
};

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}
