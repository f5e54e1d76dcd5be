import { Args } from '@oclif/core';
import { BaseCommand } from '../../src/command-support/base-command.js';
import { propagationLine } from '../../src/command-support/propagation.js';
import { openRevocationAdmin } from '../../src/users/revocation-admin.js';
import type { UserRevocationResult } from '../../src/users/revocations.js';

export type UserReinstateResult = UserRevocationResult & { via: 'store' | 'security-service' };

export default class UserReinstate extends BaseCommand {
  static override summary = 'Let a revoked user log in again.';
  static override description =
    'The user can log in and get new tickets. Tickets issued before its revocation stay refused (a ticket stolen before the revocation must not come back). Reinstating a user that is not revoked changes nothing.';
  static override examples = [
    '<%= config.bin %> <%= command.id %> bob',
    '<%= config.bin %> <%= command.id %> bob --json',
  ];
  static override args = { name: Args.string({ description: 'user name', required: true }) };

  async run(): Promise<UserReinstateResult> {
    const { args, flags } = await this.parse(UserReinstate);
    const admin = await openRevocationAdmin(this.labHome(flags));
    const r = await admin.reinstateUser(args.name);
    this.log(
      r.changed
        ? `Reinstated ${r.user}: it can log in again.`
        : `${r.user} was not revoked: nothing changed.`,
    );
    if (r.changed) this.log(propagationLine(admin.via, r.propagation));
    return { ...r, via: admin.via };
  }
}
