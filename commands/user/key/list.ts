import { Args } from '@oclif/core';
import { BaseCommand } from '../../../src/command-support/base-command.js';
import type { UserKey } from '../../../src/store/schema.js';
import { openUserAdmin } from '../../../src/users/admin.js';

export interface UserKeyListResult {
  user: string;
  keys: UserKey[];
}

export default class UserKeyList extends BaseCommand {
  static override summary = "List a user's registered public keys and their thumbprints.";
  static override examples = [
    '<%= config.bin %> <%= command.id %> alice',
    '<%= config.bin %> <%= command.id %> alice --json',
  ];
  static override args = { name: Args.string({ description: 'user name', required: true }) };

  async run(): Promise<UserKeyListResult> {
    const { args, flags } = await this.parse(UserKeyList);
    const user = await (await openUserAdmin(this.labHome(flags))).getUser(args.name);
    for (const k of user.keys) {
      this.log(`${k.thumbprint}  ${k.type}${k.bits ? `-${k.bits}` : ''}  added ${k.createdAt}`);
    }
    if (user.keys.length === 0) {
      this.log(`${user.name} has no key: trusted-ms user key add ${user.name} --public-key FILE`);
    }
    return { user: user.name, keys: user.keys };
  }
}
