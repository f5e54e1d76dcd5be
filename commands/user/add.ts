import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../src/command-support/base-command.js';
import { obtainPassword } from '../../src/command-support/password-input.js';
import { openUserAdmin } from '../../src/users/admin.js';
import type { PublicUser } from '../../src/users/users.js';

export type UserAddResult = PublicUser;

export default class UserAdd extends BaseCommand {
  static override summary = 'Add a user with a role and a password.';
  static override description =
    'The password is read from standard input with --password-stdin, or asked for on the terminal; it is never a flag. It is stored as a scrypt hash.';
  static override examples = [
    'printf %s "$PASSWORD" | <%= config.bin %> <%= command.id %> alice --role analyst --password-stdin',
    '<%= config.bin %> <%= command.id %> bob --role clerk',
  ];
  static override args = { name: Args.string({ description: 'user name: a-z, 0-9, . _ -', required: true }) };
  static override flags = {
    role: Flags.string({ char: 'r', description: 'role of the user (see `role list`)', required: true }),
    'password-stdin': Flags.boolean({ description: 'read the password from standard input' }),
  };

  async run(): Promise<UserAddResult> {
    const { args, flags } = await this.parse(UserAdd);
    const admin = await openUserAdmin(this.labHome(flags));
    const password = await obtainPassword({ stdin: flags['password-stdin'], confirm: true, user: args.name });
    const user = await admin.addUser({ name: args.name, role: flags.role, password });
    this.log(`Added ${user.name} with role ${user.role}. Next: trusted-ms user keygen ${user.name}`);
    return user;
  }
}
