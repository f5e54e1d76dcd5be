import { BaseCommand } from '../../src/command-support/base-command.js';
import { renderTable } from '../../src/command-support/table.js';
import type { Role } from '../../src/policy/types.js';
import { openLabStore } from '../../src/store/open.js';

export type RoleListResult = Role[];

export default class RoleList extends BaseCommand {
  static override summary = 'List roles and the databases each may use.';
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --json',
  ];

  async run(): Promise<RoleListResult> {
    const { flags } = await this.parse(RoleList);
    const roles = Object.values((await openLabStore(this.labHome(flags)).data()).roles);
    this.log(
      renderTable(
        ['role', 'databases', 'description'],
        roles.map((r) => [
          r.name,
          String(r.grants.length === 1 && r.grants[0]?.database === '*' ? 'all' : r.grants.length),
          r.description,
        ]),
      ),
    );
    return roles;
  }
}
