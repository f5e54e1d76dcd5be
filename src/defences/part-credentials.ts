import type { Defences } from './presets.js';

/**
 * How a part proves to the security service who it is when it reads the feeds, confirms a
 * revocation, reports on itself or relays a login. `declared`: nobody proves anything, a part is
 * whoever it says it is (the baseline, request:basic, where services trust the gateway and follow
 * no feed); `secret`: each part holds a random credential of its own (0600) that the security
 * service maps to its name, so a part speaks only for itself and never holds the lab token, the
 * CLI's admin credential; `certificate`: each part reaches the security service's control-plane
 * listener over mutual TLS with its lab-CA identity and checks the server's (links:mtls), so a
 * process on the security service's port gets nothing and is believed in nothing.
 */
export type PartCredentialStrategy = 'declared' | 'secret' | 'certificate';

export function partCredentialStrategy(d: Defences): PartCredentialStrategy {
  if (d.links === 'mtls') return 'certificate';
  return d.request === 'basic' ? 'declared' : 'secret';
}

/** Whether the parts hold the lab token at all: only while they have nothing better. */
export function partsHoldLabToken(d: Defences): boolean {
  return partCredentialStrategy(d) !== 'certificate';
}

/**
 * Whether the security service takes the login steps only from the gateway (`certificate`): on the
 * control-plane listener, where the gateway's certificate proves it is the gateway, and never on
 * the plain port, where anyone could skip the gateway's per-address login meters. With a secret or
 * nothing to tell the gateway by, the plain port keeps them (the gateway relays there).
 */
export function loginsOnlyFromGateway(d: Defences): boolean {
  return partCredentialStrategy(d) === 'certificate';
}
