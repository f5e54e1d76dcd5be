import { TrustedMsError } from '../errors.js';
import type { LabState } from '../kernel/lab-state.js';

/**
 * What the scenarios are after: a customer record. The victim's role (admin) may read it; the
 * attacker's own role (analyst) may not. `customers` is in every lab of 2 services or more.
 */
export const TARGET = {
  service: 'customers',
  database: 'customers',
  recordId: 'cust-1',
  /** path inside the service */
  path: '/db/customers/records/cust-1',
  /** the protected data is in the answer when it contains this */
  marker: '"id":"cust-1"',
} as const;

export function gatewayTargetUrl(lab: LabState): string {
  return `${lab.gatewayUrl}/svc/${TARGET.service}${TARGET.path}`;
}

export function gatewayTargetPath(): string {
  return `/svc/${TARGET.service}${TARGET.path}`;
}

/** The target service's own address (bypassing the gateway), as this host reaches it. */
export function directTargetUrl(lab: LabState): string {
  const part = lab.parts.find((p) => p.kind === 'service' && p.name === TARGET.service);
  if (part === undefined) {
    throw new TrustedMsError('SERVICE_NOT_FOUND', `the lab has no ${TARGET.service} service to attack`, {
      actions: ['bring the lab up with more services: --services 2 or more'],
    });
  }
  // A container's name resolves only inside the lab's network: from here, its address on it.
  return `${part.directUrl ?? part.url}${TARGET.path}`;
}
