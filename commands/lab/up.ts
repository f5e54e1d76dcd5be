import { Flags } from '@oclif/core';
import { BaseCommand } from '../../src/cli/base-command.js';
import { renderTable } from '../../src/cli/table.js';
import { POSTURES, parsePosture } from '../../src/lab/posture.js';
import { type LabUpResult, labUp } from '../../src/lab/up.js';

export type LabUpCommandResult = LabUpResult;

export default class LabUp extends BaseCommand {
  static override summary = 'Start the lab: security service, gateway and the sample microservices.';
  static override description =
    "Runs every part as a local process on 127.0.0.1 (the embedded default). Registers each service's code hash; in the trusted posture also measures it from outside and issues each service an mTLS identity.";
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --posture paper',
    '<%= config.bin %> <%= command.id %> --posture none --services 5 --json',
  ];
  static override flags = {
    posture: Flags.string({ description: 'security posture', options: [...POSTURES], default: 'trusted' }),
    services: Flags.integer({
      description: 'how many of the 20 services (their callees come too)',
      min: 1,
      max: 20,
      default: 20,
    }),
    runtime: Flags.string({ description: 'where parts run', options: ['auto', 'process'], default: 'auto' }),
  };

  async run(): Promise<LabUpCommandResult> {
    const { flags } = await this.parse(LabUp);
    const result = await labUp({
      home: this.labHome(flags),
      posture: parsePosture(flags.posture),
      services: flags.services,
      onProgress: (step) => this.logToStderr(`… ${step}`),
    });
    const { state } = result;
    this.log(
      renderTable(
        ['part', 'kind', 'address', 'pid'],
        state.parts.map((p) => [p.name, p.kind, p.url, String(p.pid ?? '-')]),
      ),
    );
    this.log(
      `Lab ${state.labId} up in ${(result.durationMs / 1000).toFixed(1)} s, posture ${state.posture}.`,
    );
    this.log(
      `Gateway: ${state.gatewayUrl}   Next: trusted-ms user login <name>, trusted-ms call <service> <path>`,
    );
    return result;
  }
}
