import { TrustedMsError } from '../errors.js';
import { enumeration } from './scenarios/accounts.enumeration.js';
import { lockoutDos } from './scenarios/accounts.lockout-dos.js';
import { loginBypass } from './scenarios/accounts.login-bypass.js';
import { envInjection } from './scenarios/attestation.env-injection.js';
import { auditRewrite } from './scenarios/audit.rewrite.js';
import { adminTokenTheft } from './scenarios/control-plane.admin-token-theft.js';
import { frozenFeed } from './scenarios/control-plane.frozen-feed.js';
import { spoofedSecurity } from './scenarios/control-plane.spoofed-security.js';
import { connectionExhaustion } from './scenarios/dos.connection-exhaustion.js';
import { loginFlood } from './scenarios/dos.login-flood.js';
import { requestFlood } from './scenarios/dos.request-flood.js';
import { securityReplicaDown } from './scenarios/dos.security-replica-down.js';
import { relayedTicket } from './scenarios/identity.relayed-ticket.js';
import { untrustedServiceKeepsCert } from './scenarios/identity.untrusted-service-keeps-cert.js';
import { impersonation } from './scenarios/malicious-service.impersonation.js';
import { lateralTheft } from './scenarios/malicious-service.lateral-theft.js';
import { lyingAttestation } from './scenarios/malicious-service.lying-attestation.js';
import { swapAtRestart } from './scenarios/malicious-service.swap-at-restart.js';
import { tamperedCode } from './scenarios/malicious-service.tampered-code.js';
import { replayedChallenge } from './scenarios/masquerade.replayed-challenge.js';
import { stolenPassword } from './scenarios/masquerade.stolen-password.js';
import { stolenTicket } from './scenarios/masquerade.stolen-ticket.js';
import { eavesdrop } from './scenarios/mitm.eavesdrop.js';
import { edgeEavesdrop } from './scenarios/mitm.edge-eavesdrop.js';
import { mitmTamper } from './scenarios/mitm.tamper.js';
import { crossDatabase } from './scenarios/privilege.cross-database.js';
import { forgedRole } from './scenarios/privilege.forged-role.js';
import { forgedConfirmation } from './scenarios/revocation.forged-confirmation.js';
import type { PlannedScenario, Scenario } from './types.js';

/** Every scenario that runs, in catalog order (DESIGN.md, "Attack catalog"). Explicit: no discovery. */
export const SCENARIOS: readonly Scenario[] = [
  stolenPassword,
  replayedChallenge,
  stolenTicket,
  crossDatabase,
  forgedRole,
  loginFlood,
  requestFlood,
  connectionExhaustion,
  tamperedCode,
  lyingAttestation,
  swapAtRestart,
  lateralTheft,
  untrustedServiceKeepsCert,
  relayedTicket,
  impersonation,
  envInjection,
  eavesdrop,
  mitmTamper,
  edgeEavesdrop,
  adminTokenTheft,
  forgedConfirmation,
  spoofedSecurity,
  frozenFeed,
  securityReplicaDown,
  auditRewrite,
  // Last: they leave the attacker's addresses locked out for a while, which is the defence working.
  lockoutDos,
  enumeration,
  // From an address of its own each run: nothing the two above left engages for it.
  loginBypass,
];

/** The rest of the catalog: listed so nobody mistakes their absence for a pass. Never run. */
export const PLANNED: readonly PlannedScenario[] = [];

export function findScenario(id: string): Scenario {
  const s = SCENARIOS.find((x) => x.id === id);
  if (s !== undefined) return s;
  const planned = PLANNED.find((x) => x.id === id);
  throw new TrustedMsError(
    'SCENARIO_NOT_FOUND',
    planned ? `${id} is in the catalog but not built yet: ${planned.missing}` : `no scenario ${id}`,
    { actions: ['see the catalog: trusted-ms attack list'] },
  );
}
