import { Args } from '@oclif/core';
import { BaseCommand } from '../../src/command-support/base-command.js';
import { openLabStore } from '../../src/store/open.js';
import { getUser, type PublicUser, toPublicUser } from '../../src/users/users.js';

export type UserShowResult = PublicUser;

export default class UserShow extends BaseCommand {
  static override summary = 'Show one user: role, keys, password scheme, dates.';
  static override examples = [
    '<%= config.bin %> <%= command.id %> alice',
    '<%= config.bin %> <%= command.id %> alice --json',
  ];
  static override args = { name: Args.string({ description: 'user name', required: true }) };

  async run(): Promise<UserShowResult> {
    const { args, flags } = await this.parse(UserShow);
    const user = toPublicUser(await getUser(openLabStore(this.labHome(flags)), args.name));
    this.log(`${user.name}  role ${user.role}  password ${user.passwordScheme}  created ${user.createdAt}`);
    for (const key of user.keys) {
      this.log(`  ${key.type}${key.bits ? `-${key.bits}` : ''}  ${key.thumbprint}  ${key.createdAt}`);
    }
    if (user.keys.length === 0) this.log(`  no keys: trusted-ms user keygen ${user.name}`);
    return user;
  }
}
