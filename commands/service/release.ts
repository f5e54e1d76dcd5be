import { Args } from '@oclif/core';
import { BaseCommand } from '../../src/command-support/base-command.js';
import { propagationLine } from '../../src/command-support/propagation.js';
import { openRevocationAdmin } from '../../src/users/revocation-admin.js';
import type { QuarantineResult } from '../../src/users/revocations.js';

export type ServiceReleaseResult = QuarantineResult & { via: 'store' | 'security-service' };

export default class ServiceRelease extends BaseCommand {
  static override summary = 'Lift the quarantine of a service.';
  static override description =
    'The gateway and the peers talk to it again, if its attestation is good (posture paper and trusted); in trusted it gets an identity again the next time it is verified (`service verify`).';
  static override examples = [
    '<%= config.bin %> <%= command.id %> orders',
    '<%= config.bin %> <%= command.id %> orders --json',
  ];
  static override args = {
    name: Args.string({ description: 'service name (see `service list`)', required: true }),
  };

  async run(): Promise<ServiceReleaseResult> {
    const { args, flags } = await this.parse(ServiceRelease);
    const admin = await openRevocationAdmin(this.labHome(flags));
    const r = await admin.release(args.name);
    this.log(r.changed ? `Released ${r.service}.` : `${r.service} was not quarantined: nothing changed.`);
    if (r.changed) this.log(propagationLine(admin.via, r.propagation));
    return { ...r, via: admin.via };
  }
}
