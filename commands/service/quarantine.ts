import { Args } from '@oclif/core';
import { BaseCommand } from '../../src/command-support/base-command.js';
import { propagationLine } from '../../src/command-support/propagation.js';
import { openRevocationAdmin } from '../../src/users/revocation-admin.js';
import type { QuarantineResult } from '../../src/users/revocations.js';

export type ServiceQuarantineResult = QuarantineResult & { via: 'store' | 'security-service' };

export default class ServiceQuarantine extends BaseCommand {
  static override summary = 'Take a service out: nobody routes to it or accepts calls from it.';
  static override description =
    `From the moment the command returns: the gateway refuses calls to the service (503 SERVICE_QUARANTINED, in every posture), its peers neither call it nor accept its calls (PEER_QUARANTINED; a caller is known by its certificate, so this part is the trusted posture's), and the security service issues it no identity. Whatever its attestation says: a quarantine is the operator's decision, lifted only by \`service release\`. Kept in the store, so it survives restarts; shown by \`service list\`.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %> orders',
    '<%= config.bin %> <%= command.id %> orders --json',
  ];
  static override args = {
    name: Args.string({ description: 'service name (see `service list`)', required: true }),
  };

  async run(): Promise<ServiceQuarantineResult> {
    const { args, flags } = await this.parse(ServiceQuarantine);
    const admin = await openRevocationAdmin(this.labHome(flags));
    const r = await admin.quarantine(args.name);
    this.log(r.changed ? `Quarantined ${r.service}.` : `${r.service} was already quarantined.`);
    this.log(propagationLine(admin.via, r.propagation));
    return { ...r, via: admin.via };
  }
}
