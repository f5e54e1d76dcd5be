import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../src/cli/base-command.js';
import { obtainPassword } from '../../src/cli/password-input.js';
import { openLabStore } from '../../src/store/open.js';
import { checkPassword } from '../../src/users/users.js';

export interface UserCheckPasswordResult {
  user: string;
  ok: true;
  upgraded: boolean;
}

export default class UserCheckPassword extends BaseCommand {
  static override summary = "Check a user's password against the store (a login's first step).";
  static override description =
    'Exits 0 when the password is right and 4 (AUTH_FAILED) when it is not. A password imported from htpasswd in bcrypt form is upgraded to scrypt here, as at a login.';
  static override examples = [
    'printf %s "$PASSWORD" | <%= config.bin %> <%= command.id %> carol --password-stdin',
  ];
  static override args = { name: Args.string({ description: 'user name', required: true }) };
  static override flags = {
    'password-stdin': Flags.boolean({ description: 'read the password from standard input' }),
  };

  async run(): Promise<UserCheckPasswordResult> {
    const { args, flags } = await this.parse(UserCheckPassword);
    const password = await obtainPassword({
      stdin: flags['password-stdin'],
      confirm: false,
      user: args.name,
    });
    const { upgraded } = await checkPassword(openLabStore(this.labHome(flags)), args.name, password);
    this.log(`Password of ${args.name} is correct${upgraded ? '; its hash was upgraded to scrypt' : ''}.`);
    return { user: args.name, ok: true, upgraded };
  }
}
