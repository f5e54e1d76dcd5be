import type { Propagation } from '../users/revocations.js';

/** One line on how far a revocation or quarantine reached before the command returned. */
export function propagationLine(via: 'store' | 'security-service', p: Propagation | undefined): string {
  if (via === 'store' || p === undefined) return 'The lab is not running: in force from its next start.';
  if (p.parts === 0) return 'No part was listening: each one fetches the list when it (re)connects.';
  return `In force at ${p.confirmed} of ${p.parts} listening parts (gateway and services) after ${p.ms} ms.`;
}
