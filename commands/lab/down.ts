import { BaseCommand } from '../../src/cli/base-command.js';
import { type LabDownResult, labDown } from '../../src/lab/down.js';

export type LabDownCommandResult = LabDownResult;

export default class LabDown extends BaseCommand {
  static override summary = 'Stop every part the lab started.';
  static override examples = ['<%= config.bin %> <%= command.id %>'];

  async run(): Promise<LabDownCommandResult> {
    const { flags } = await this.parse(LabDown);
    const result = await labDown(this.labHome(flags));
    if (result.labId === undefined) this.log('No lab was running.');
    else
      this.log(`Lab ${result.labId}: stopped ${result.stopped.length} part(s) in ${result.durationMs} ms.`);
    return result;
  }
}
