import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../src/command-support/base-command.js';
import { obtainPassword } from '../../src/command-support/password-input.js';
import { openUserAdmin } from '../../src/users/admin.js';

export interface UserCheckPasswordResult {
  user: string;
  ok: true;
  upgraded: boolean;
}

export default class UserCheckPassword extends BaseCommand {
  static override summary = "Check a user's password against the store (a login's first step).";
  static override description =
    "Exits 0 when the password is right and 4 (AUTH_FAILED) when it is not. A password imported from htpasswd in bcrypt form is upgraded to scrypt here, as at a login (through the security service while a lab runs, since it is then the store's only writer).";
  static override examples = [
    'printf %s "$PASSWORD" | <%= config.bin %> <%= command.id %> carol --password-stdin',
  ];
  static override args = { name: Args.string({ description: 'user name', required: true }) };
  static override flags = {
    'password-stdin': Flags.boolean({ description: 'read the password from standard input' }),
  };

  async run(): Promise<UserCheckPasswordResult> {
    const { args, flags } = await this.parse(UserCheckPassword);
    const admin = await openUserAdmin(this.labHome(flags));
    const password = await obtainPassword({
      stdin: flags['password-stdin'],
      confirm: false,
      user: args.name,
    });
    const { upgraded } = await admin.checkPassword(args.name, password);
    this.log(`Password of ${args.name} is correct${upgraded ? '; its hash was upgraded to scrypt' : ''}.`);
    return { user: args.name, ok: true, upgraded };
  }
}
