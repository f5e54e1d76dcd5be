import { Args } from '@oclif/core';
import { BaseCommand } from '../../src/command-support/base-command.js';
import { renderTable } from '../../src/command-support/table.js';
import { TrustedMsError } from '../../src/errors.js';
import type { Role } from '../../src/policy/types.js';
import { openLabStore } from '../../src/store/open.js';

export type RoleShowResult = Role;

export default class RoleShow extends BaseCommand {
  static override summary = 'Show what a role may do, database by database.';
  static override examples = [
    '<%= config.bin %> <%= command.id %> analyst',
    '<%= config.bin %> <%= command.id %> clerk --json',
  ];
  static override args = { name: Args.string({ description: 'role name', required: true }) };

  async run(): Promise<RoleShowResult> {
    const { args, flags } = await this.parse(RoleShow);
    const roles = (await openLabStore(this.labHome(flags)).data()).roles;
    const role = roles[args.name];
    if (!role) {
      throw new TrustedMsError('ROLE_NOT_FOUND', `no role named ${args.name}`, {
        actions: [`roles are: ${Object.keys(roles).join(', ')}`],
      });
    }
    this.log(`${role.name}: ${role.description}`);
    this.log(
      renderTable(
        ['database', 'read', 'query', 'write'],
        role.grants.map((g) => [
          g.database === '*' ? '* (all)' : g.database,
          ...(['read', 'query', 'write'] as const).map((a) => (g.actions.includes(a) ? 'yes' : '-')),
        ]),
      ),
    );
    return role;
  }
}
