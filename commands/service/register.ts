import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../src/command-support/base-command.js';
import { TrustedMsError } from '../../src/errors.js';
import { registerServices, type ServiceAttestation } from '../../src/lab/attest.js';

export type ServiceRegisterResult = ServiceAttestation[];

export default class ServiceRegister extends BaseCommand {
  static override summary = "Record a service's current code hash as the expected one.";
  static override examples = [
    '<%= config.bin %> <%= command.id %> orders',
    '<%= config.bin %> <%= command.id %> --all',
  ];
  static override strict = false;
  static override args = { name: Args.string({ description: 'service name(s)' }) };
  static override flags = { all: Flags.boolean({ description: 'every service of the lab' }) };

  async run(): Promise<ServiceRegisterResult> {
    const { argv, flags } = await this.parse(ServiceRegister);
    const names = argv as string[];
    if (!flags.all && names.length === 0) throw new TrustedMsError('USAGE', 'name a service, or use --all');
    const services = await registerServices(this.labHome(flags), flags.all ? 'all' : names);
    for (const s of services) this.log(`${s.name}  ${s.expectedHash}`);
    return services;
  }
}
