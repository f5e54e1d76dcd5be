import { isAttested } from '../../defences/attestation-table.js';
import { issueServiceCertificate, type ServiceIdentity } from '../../pki/identity.js';
import type { SecurityContext } from './context.js';
import { NON_SERVICE_PART_NAMES, type ServiceRegistry } from './registry.js';

/**
 * Records measured (or self-reported) hashes: each one audited, the gateway told, and, when asked
 * and the lab has a CA, an identity for every service that passed and is not quarantined.
 */
export async function reportAndIssue(
  ctx: SecurityContext,
  reports: Parameters<ServiceRegistry['report']>[0],
  issueIdentity: boolean,
) {
  const statuses = await ctx.registry.report(reports);
  // All at once: the audit log queues the appends itself (one line each, in order).
  await Promise.all(
    statuses.map((s, i) =>
      ctx.audit({
        actor: reports[0]?.by === 'self' ? s.name : 'runtime',
        action: 'service.attest',
        target: s.name,
        outcome: isAttested(s.state) && !s.late ? 'ok' : 'denied',
        ...(s.late ? { code: 'LAUNCH_ENDED' } : isAttested(s.state) ? {} : { code: 'ATTESTATION_MISMATCH' }),
        detail: {
          measured: reports[i]?.hash,
          expected: s.expectedHash,
          ...(reports[i]?.launch !== undefined ? { launch: reports[i]?.launch } : {}),
        },
      }),
    ),
  );
  await ctx.onAttestation?.(ctx.registry.list()).catch(() => undefined);
  await ctx.revocations.attestationsChanged();
  const identities: Record<string, ServiceIdentity> = {};
  if (issueIdentity && ctx.ca) {
    for (const s of statuses) {
      // A record under a part's name (a store from before names were refused) gets no identity either.
      if (
        isAttested(s.state) &&
        !s.late &&
        !ctx.revocations.quarantined(s.name) &&
        !NON_SERVICE_PART_NAMES.includes(s.name)
      )
        identities[s.name] = await issueServiceCertificate(ctx.ca, {
          name: s.name,
          ...identityValidity(ctx),
        });
    }
  }
  return { services: statuses, identities };
}

/**
 * When an identity the service issues is valid: from the lab clock's now, not the wall clock's (a
 * certificate issued during a forward step of the wall was not yet valid anywhere once the step was
 * corrected: after the red team's A7, a security service restarted during a +2 h blip), for the
 * lab's lifetime when `lab up` set one (`--identity-ttl`).
 */
export function identityValidity(ctx: SecurityContext): { ttlSeconds?: number; now: () => Date } {
  const now = () => new Date(ctx.now());
  return ctx.identityTtlSeconds === undefined ? { now } : { ttlSeconds: ctx.identityTtlSeconds, now };
}
