import { BaseCommand } from '../../src/command-support/base-command.js';
import { renderTable } from '../../src/command-support/table.js';
import { listServices, type ServiceAttestation } from '../../src/lab/attest.js';

export type ServiceListResult = ServiceAttestation[];

export default class ServiceList extends BaseCommand {
  static override summary =
    'List the services of the running lab with their registered hash and attestation state.';
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --json',
  ];

  async run(): Promise<ServiceListResult> {
    const { flags } = await this.parse(ServiceList);
    const services = await listServices(this.labHome(flags));
    this.log(
      renderTable(
        ['service', 'state', 'expected hash', 'measured by', 'at'],
        services.map((s) => [
          s.name,
          s.quarantined === true ? `${s.state}, quarantined` : s.state,
          (s.expectedHash ?? '-').slice(0, 23),
          s.measuredBy ?? '-',
          s.measuredAt ?? '-',
        ]),
      ),
    );
    return services;
  }
}
