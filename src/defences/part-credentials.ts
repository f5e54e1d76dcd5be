import type { Defences } from './presets.js';

/**
 * How a part proves to the security service who it is when it reads the feeds, confirms a
 * revocation or reports on itself. `declared`: nobody proves anything, a part is whoever it says it
 * is (the baseline, request:basic, where services trust the gateway and follow no feed); `secret`:
 * each part holds a random credential of its own (0600) that the security service maps to its name,
 * so a part can speak only for itself and never holds the lab token, the CLI's admin credential.
 * Certificates on a control-plane listener (links:mtls) are the next strategy (issue 13, item 1).
 */
export type PartCredentialStrategy = 'declared' | 'secret';

export function partCredentialStrategy(d: Defences): PartCredentialStrategy {
  return d.request === 'basic' ? 'declared' : 'secret';
}
