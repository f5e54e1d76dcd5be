import { writeFile } from 'node:fs/promises';
import { Args, Flags } from '@oclif/core';
import { findScenario, SCENARIOS } from '../../src/attacks/registry.js';
import { renderJunit, renderMatrix } from '../../src/attacks/report.js';
import { type AttackReport, runAttacks } from '../../src/attacks/runner.js';
import { BaseCommand, type JsonEnvelope } from '../../src/cli/base-command.js';
import { TrustedMsError } from '../../src/errors.js';
import { POSTURES, type Posture } from '../../src/lab/posture.js';

export type AttackSimulateResult = AttackReport;

/** Exit status when a scenario's outcome differs from its expectation (docs/report.md). */
export const OUTCOME_MISMATCH_EXIT = 1;

export default class AttackSimulate extends BaseCommand {
  static override summary =
    'Run attack scenarios against the lab in one posture or all three, judged from evidence.';
  static override description =
    'Uses the lab running in --home when its posture is the one asked for; otherwise brings a lab up in a temporary home for that posture and takes it down after. Exits 1 when any outcome differs from its expectation. Report schema: docs/report.md.';
  static override strict = false;
  static override examples = [
    '<%= config.bin %> <%= command.id %> --all --posture all',
    '<%= config.bin %> <%= command.id %> masquerade.stolen-ticket --posture trusted',
    '<%= config.bin %> <%= command.id %> --all --posture all --junit attacks.xml --json',
  ];
  static override args = { ids: Args.string({ description: 'scenario ids (see `attack list`)' }) };
  static override flags = {
    all: Flags.boolean({ description: 'every built scenario' }),
    posture: Flags.string({
      description: 'posture to attack',
      options: [...POSTURES, 'all'],
      default: 'trusted',
    }),
    services: Flags.integer({
      description: 'services in labs this command brings up',
      default: 20,
      min: 2,
      max: 20,
    }),
    junit: Flags.string({ description: 'also write a JUnit XML report to this file' }),
  };

  async run(): Promise<AttackSimulateResult> {
    const { argv, flags } = await this.parse(AttackSimulate);
    const ids = argv as string[];
    if (flags.all === ids.length > 0) {
      throw new TrustedMsError('USAGE', 'name scenario ids or give --all (not both)', {
        actions: ['see them: trusted-ms attack list'],
      });
    }
    const scenarios = flags.all ? SCENARIOS : ids.map(findScenario);
    const postures: readonly Posture[] = flags.posture === 'all' ? POSTURES : [flags.posture as Posture];
    const report = await runAttacks({
      scenarios,
      postures,
      home: this.labHome(flags),
      services: flags.services,
      onProgress: (line) => process.stderr.write(this.jsonEnabled() ? '' : `  ${line}\n`),
    });
    if (flags.junit) await writeFile(flags.junit, renderJunit(report));
    this.log(renderMatrix(report));
    if (!report.ok) process.exitCode = OUTCOME_MISMATCH_EXIT;
    return report;
  }

  protected override toSuccessJson(result: unknown): JsonEnvelope<unknown> {
    return {
      status: (result as AttackReport).ok ? 0 : OUTCOME_MISMATCH_EXIT,
      result,
    } as JsonEnvelope<unknown>;
  }
}
