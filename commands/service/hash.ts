import { Args, Flags } from '@oclif/core';
import { formatRecord, hashDirectory, type TreeHash } from '../../src/attestation/tree-hash.js';
import { BaseCommand } from '../../src/command-support/base-command.js';

export type ServiceHashResult = TreeHash;

export default class ServiceHash extends BaseCommand {
  static override summary = 'Compute the tree hash of a code folder (docs/attestation.md).';
  static override examples = [
    '<%= config.bin %> <%= command.id %> .trusted-ms/lab/services/orders/app',
    '<%= config.bin %> <%= command.id %> ./my-service --verbose',
  ];
  static override args = { dir: Args.string({ description: 'the folder to hash', required: true }) };
  static override flags = {
    verbose: Flags.boolean({ char: 'v', description: 'also print the record of every file' }),
  };

  async run(): Promise<ServiceHashResult> {
    const { args, flags } = await this.parse(ServiceHash);
    const result = await hashDirectory(args.dir, { listing: flags.verbose });
    if (flags.verbose) for (const r of result.records ?? []) this.log(formatRecord(r).trimEnd());
    this.log(`${result.hash}  ${result.files} files, ${result.bytes} bytes`);
    return result;
  }
}
