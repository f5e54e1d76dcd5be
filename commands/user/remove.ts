import { Args } from '@oclif/core';
import { BaseCommand } from '../../src/command-support/base-command.js';
import { openUserAdmin } from '../../src/users/admin.js';

export interface UserRemoveResult {
  removed: string;
}

export default class UserRemove extends BaseCommand {
  static override summary = 'Remove a user and unregister its keys.';
  static override description = "The user's private key file, if any, is left where it is.";
  static override examples = ['<%= config.bin %> <%= command.id %> bob'];
  static override args = { name: Args.string({ description: 'user name', required: true }) };

  async run(): Promise<UserRemoveResult> {
    const { args, flags } = await this.parse(UserRemove);
    await (await openUserAdmin(this.labHome(flags))).removeUser(args.name);
    this.log(`Removed ${args.name}.`);
    return { removed: args.name };
  }
}
