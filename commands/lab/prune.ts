import { Flags } from '@oclif/core';
import { BaseCommand } from '../../src/command-support/base-command.js';
import type { PruneResult } from '../../src/lab/runtimes/docker/prune.js';

export type LabPruneResult = PruneResult;

export default class LabPrune extends BaseCommand {
  static override summary = 'Remove the Docker images trusted-ms built that nothing uses any more.';
  static override description =
    'Every change to the compiled lab builds a new lab image (they are cached by content, and no registry can give them back), so old ones pile up. This removes the lab and node images no container uses, keeping the newest lab image (and the node image under it) unless --all, and any builder container an interrupted build left. Images a container still uses are always kept.';
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --all --json',
  ];
  static override flags = {
    all: Flags.boolean({
      description: 'do not keep the newest lab image either (the next Docker lab up builds it again)',
    }),
  };

  async run(): Promise<LabPruneResult> {
    const { flags } = await this.parse(LabPrune);
    const { requireEngine } = await import('../../src/lab/runtimes/docker/engine.js');
    const docker = await requireEngine();
    const { pruneLabImages } = await import('../../src/lab/runtimes/docker/prune.js');
    const result = await pruneLabImages(docker, { all: flags.all });
    const mib = (result.reclaimedBytes / 1024 / 1024).toFixed(0);
    this.log(
      `Removed ${result.removed.length} image(s), about ${mib} MiB; kept ${result.kept.join(', ') || 'none'}.`,
    );
    if (result.builders > 0) this.log(`Removed ${result.builders} leftover builder container(s).`);
    return result;
  }
}
