import { plantedCodeLifecycle } from '../planted-code.js';
import type { Scenario } from '../types.js';

/** The customers service's code is replaced by a variant that copies every record it serves to the attacker. */
export const tamperedCode: Scenario = {
  id: 'malicious-service.tampered-code',
  title: "A service's code is changed to copy user records to the attacker",
  paperAttack: 4,
  technique: 'T1565',
  description:
    "The attacker replaces the customers service's code on disk with a variant of the kit (src/attacks/payloads/exfil-service.ts) that serves as before but also sends every record it answers with to the attacker's sink, and the service is restarted as a deployment would. The victim then reads a customer record through the gateway. In paper the tampered service still measures its own code honestly at start-up, so the paper's self-report does catch it (the gateway refuses it); in trusted the runtime measures the code folder from outside before the start and the gateway refuses an untrusted service. Revert puts the original code back and restarts the service.",
  evidence:
    "The records that reached the attacker's sink after the victim's read (succeeded when the customer record is among them), and the status the victim's read got.",
  expected: { none: 'succeeded', paper: 'blocked', trusted: 'blocked' },

  ...plantedCodeLifecycle('exfil'),
};
