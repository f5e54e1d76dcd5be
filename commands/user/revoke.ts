import { Args } from '@oclif/core';
import { BaseCommand } from '../../src/command-support/base-command.js';
import { propagationLine } from '../../src/command-support/propagation.js';
import { openRevocationAdmin } from '../../src/users/revocation-admin.js';
import type { UserRevocationResult } from '../../src/users/revocations.js';

export type UserRevokeResult = UserRevocationResult & { via: 'store' | 'security-service' };

export default class UserRevoke extends BaseCommand {
  static override summary = 'Revoke a user: refuse its logins and every ticket it holds, at once.';
  static override description =
    `From the moment the command returns, the user cannot log in (USER_REVOKED, also in posture none, whose gateway forgets the user's cached password check), and every ticket issued to it so far is refused (TICKET_REVOKED) by the gateway and by the services, which check tickets themselves. While the lab runs, the command answers once the security service has stored the revocation and told the gateway and the services (it reports how many confirmed); when no lab runs, it is written to the store and in force from the next start. Revocations survive restarts.

\`user reinstate\` lets the user log in again; tickets issued before the revocation stay refused.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %> bob',
    '<%= config.bin %> <%= command.id %> bob --json',
  ];
  static override args = { name: Args.string({ description: 'user name', required: true }) };

  async run(): Promise<UserRevokeResult> {
    const { args, flags } = await this.parse(UserRevoke);
    const admin = await openRevocationAdmin(this.labHome(flags));
    const r = await admin.revokeUser(args.name);
    this.log(
      `${r.changed ? 'Revoked' : 'Already revoked:'} ${r.user}: no login, and tickets issued before ${new Date(r.notBefore * 1000).toISOString()} are refused.`,
    );
    this.log(propagationLine(admin.via, r.propagation));
    return { ...r, via: admin.via };
  }
}
