import { plantedCodeLifecycle } from '../planted-code.js';
import type { Scenario } from '../types.js';

/** Tampered code that, asked for its own hash, answers with the registered one. */
export const lyingAttestation: Scenario = {
  id: 'malicious-service.lying-attestation',
  title: 'The tampered service reports the original hash',
  paperAttack: 4,
  technique: 'T1565',
  description:
    "As tampered-code, but the variant (src/attacks/payloads/lying-service.ts) does not measure itself: at start-up it reports the hash the security service expects (read from the public service list). The paper's scheme has the service vouch for its own code, so the lie is believed and the gateway routes the victim to it; in trusted the hash is measured from outside by the runtime, so the lie has no one to tell (self-reports are refused) and the service is marked untrusted. Revert puts the original code back and restarts the service.",
  evidence:
    "The records that reached the attacker's sink after the victim's read of a customer record (succeeded when the record is among them), and the status the victim's read got.",
  expected: { none: 'succeeded', paper: 'succeeded', trusted: 'blocked' },

  ...plantedCodeLifecycle('lying'),
};
