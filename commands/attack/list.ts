import { PLANNED, SCENARIOS } from '../../src/attacks/registry.js';
import { BaseCommand } from '../../src/command-support/base-command.js';
import { renderTable } from '../../src/command-support/table.js';

export interface AttackListEntry {
  id: string;
  paperAttack: number;
  technique: string;
  title: string;
  built: boolean;
}
export type AttackListResult = AttackListEntry[];

export default class AttackList extends BaseCommand {
  static override summary = 'List the attack catalog: id, the paper attack, the ATT&CK technique, the title.';
  static override description = 'Scenarios marked "not built" are in the catalog but cannot run yet.';
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --json',
  ];

  async run(): Promise<AttackListResult> {
    await this.parse(AttackList);
    const entries: AttackListResult = [
      ...SCENARIOS.map((s) => ({
        id: s.id,
        paperAttack: s.paperAttack,
        technique: s.technique,
        title: s.title,
        built: true,
      })),
      ...PLANNED.map((s) => ({
        id: s.id,
        paperAttack: s.paperAttack,
        technique: s.technique,
        title: s.title,
        built: false,
      })),
    ];
    this.log(
      renderTable(
        ['id', 'paper', 'ATT&CK', 'title', 'built'],
        entries.map((e) => [
          e.id,
          String(e.paperAttack),
          e.technique,
          e.title,
          e.built ? 'yes' : 'not built',
        ]),
      ),
    );
    return entries;
  }
}
