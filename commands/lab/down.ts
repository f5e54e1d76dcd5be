import { Flags } from '@oclif/core';
import { BaseCommand } from '../../src/cli/base-command.js';
import { type LabDownResult, labDown } from '../../src/lab/down.js';

export type LabDownCommandResult = LabDownResult;

export default class LabDown extends BaseCommand {
  static override summary = 'Stop every part the lab started.';
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --all',
  ];
  static override flags = {
    all: Flags.boolean({
      description:
        'also remove every container and network of any trusted-ms lab, found by label (e.g. after a crash)',
    }),
  };

  async run(): Promise<LabDownCommandResult> {
    const { flags } = await this.parse(LabDown);
    const result = await labDown(this.labHome(flags), undefined, { all: flags.all });
    if (result.removed.length > 0) this.log(`Removed by label: ${result.removed.join(', ')}.`);
    if (result.labId === undefined) this.log('No lab was running.');
    else
      this.log(`Lab ${result.labId}: stopped ${result.stopped.length} part(s) in ${result.durationMs} ms.`);
    return result;
  }
}
