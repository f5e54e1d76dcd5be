import { Args, Flags } from '@oclif/core';
import chalk from 'chalk';
import { BaseCommand } from '../../src/command-support/base-command.js';
import { renderTable } from '../../src/command-support/table.js';
import { TrustedMsError } from '../../src/errors.js';
import { type ServiceAttestation, verifyServices } from '../../src/lab/attest.js';

export interface ServiceVerifyResult {
  services: ServiceAttestation[];
  durationMs: number;
}

export default class ServiceVerify extends BaseCommand {
  static override summary =
    "Measure services' code now, from outside, and compare with the registered hashes.";
  static override description =
    'A mismatch marks the service untrusted: the gateway refuses to route to it (503 SERVICE_UNTRUSTED) and, in the trusted posture, its peers stop trusting it. Exits 8 (ATTESTATION_MISMATCH) when any service does not match.';
  static override examples = [
    '<%= config.bin %> <%= command.id %> --all',
    '<%= config.bin %> <%= command.id %> orders payments --json',
  ];
  static override strict = false;
  static override args = { name: Args.string({ description: 'service name(s)' }) };
  static override flags = { all: Flags.boolean({ description: 'every service of the lab' }) };

  async run(): Promise<ServiceVerifyResult> {
    const { argv, flags } = await this.parse(ServiceVerify);
    const names = argv as string[];
    if (!flags.all && names.length === 0) throw new TrustedMsError('USAGE', 'name a service, or use --all');
    const result = await verifyServices(this.labHome(flags), flags.all ? 'all' : names);
    const paint = (s: string): string => (s === 'trusted' ? chalk.green(s) : chalk.red(s));
    this.log(
      renderTable(
        ['service', 'state', 'measured'],
        result.services.map((s) => [
          s.name,
          s.deferred ? chalk.yellow('not measured') : paint(s.state),
          s.deferred ?? s.measuredHash ?? '-',
        ]),
      ),
    );
    const bad = result.services.filter((s) => s.state !== 'trusted' && !s.deferred);
    const deferred = result.services.filter((s) => s.deferred);
    if (deferred.length > 0 && bad.length === 0) {
      // Not a verdict: nothing was found wrong, but not everything could be looked at.
      const err = new TrustedMsError(
        'MEASUREMENT_DEFERRED',
        `not measured right now: ${deferred.map((s) => s.name).join(', ')}`,
        { actions: ['measure them again in a moment'] },
      );
      if (this.jsonEnabled()) {
        process.exitCode = err.exitCode;
        return result;
      }
      throw err;
    }
    this.log(
      `${result.services.length - bad.length}/${result.services.length} trusted, measured in ${result.durationMs.toFixed(0)} ms.`,
    );
    if (bad.length > 0) {
      const err = new TrustedMsError(
        'ATTESTATION_MISMATCH',
        `code changed: ${bad.map((s) => (s.differs ? `${s.name} (${s.differs.join(', ')})` : s.name)).join(', ')}`,
        {
          actions: ['if the change is intended: trusted-ms service register <name>'],
        },
      );
      if (this.jsonEnabled()) {
        process.exitCode = err.exitCode;
        return result;
      }
      throw err;
    }
    return result;
  }
}
