import { TrustedMsError } from '../errors.js';
import { type AttestationState, isAttested } from './attestation-table.js';
import type { Defences } from './presets.js';

/**
 * The `attestation` defence where traffic is routed: may this service be sent a request? `none`
 * sends to any service; `self` and `measured` only to one whose latest attestation (the service's
 * own report, or a measurement from outside, as the security service's table says) is trusted.
 * Who measures, and whether a self-report counts, is the security service's half of the choice.
 */
export interface AttestationGate {
  /** resolves when the service may serve; throws SERVICE_UNTRUSTED otherwise */
  admit(service: string): Promise<void>;
}

export const ADMIT_ANY: AttestationGate = Object.freeze({ admit: async () => undefined });

/**
 * Only services the table calls trusted. The table is pushed and polled, so a service attested a
 * moment ago (a lab just up, a service just restarted) would get 503 until the next poll: before
 * refusing, `recheck` asks the security service again (the caller bounds how often it really asks).
 */
export class AttestedOnly implements AttestationGate {
  constructor(
    private readonly table: { state(service: string): AttestationState },
    private readonly recheck?: () => Promise<void>,
  ) {}

  async admit(service: string): Promise<void> {
    if (isAttested(this.table.state(service))) return;
    await this.recheck?.();
    if (!isAttested(this.table.state(service))) {
      throw new TrustedMsError('SERVICE_UNTRUSTED', `service ${service} is not attested`);
    }
  }
}

/** The gate a gateway with these defences gets. */
export function attestationGate(
  choice: Defences['attestation'],
  table: { state(service: string): AttestationState },
  recheck?: () => Promise<void>,
): AttestationGate {
  return enforcesAttestation(choice) ? new AttestedOnly(table, recheck) : ADMIT_ANY;
}

/** Whether traffic is refused to a service that is not attested (self-reported or measured). */
export function enforcesAttestation(choice: Defences['attestation']): boolean {
  switch (choice) {
    case 'self':
    case 'measured':
      return true;
    case 'none':
      return false;
  }
}

/** Security service: whether a service's report of its own hash counts (the paper's scheme). */
export function acceptsSelfReport(choice: Defences['attestation']): boolean {
  return choice === SELF;
}
const SELF: Defences['attestation'] = 'self';

/** Whether the runtime measures services from outside (at start, on restart, on an interval). */
export function measuredByRuntime(choice: Defences['attestation']): boolean {
  return choice === MEASURED;
}
const MEASURED: Defences['attestation'] = 'measured';
