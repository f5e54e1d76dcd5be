import { BaseCommand } from '../../src/command-support/base-command.js';
import { renderTable } from '../../src/command-support/table.js';
import { openLabStore } from '../../src/store/open.js';
import { listUsers, type PublicUser, toPublicUser } from '../../src/users/users.js';

export type UserListResult = PublicUser[];

export default class UserList extends BaseCommand {
  static override summary = 'List users, their roles and key thumbprints.';
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --json',
  ];

  async run(): Promise<UserListResult> {
    const { flags } = await this.parse(UserList);
    const users = (await listUsers(openLabStore(this.labHome(flags)))).map(toPublicUser);
    if (users.length === 0) this.log('No users yet. Add one: trusted-ms user add <name> --role <role>');
    else
      this.log(
        renderTable(
          ['user', 'role', 'keys', 'password'],
          users.map((u) => [
            u.name,
            u.role,
            u.keys.map((k) => k.thumbprint).join('\n') || '-',
            u.passwordScheme,
          ]),
        ),
      );
    return users;
  }
}
