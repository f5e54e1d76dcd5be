import { stat, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { Args, Flags } from '@oclif/core';
import { findScenario, SCENARIOS } from '../../src/attacks/registry.js';
import { renderJunit, renderMatrix } from '../../src/attacks/report.js';
import { renderHtml } from '../../src/attacks/report-html.js';
import { type AttackReport, runAttacks } from '../../src/attacks/runner.js';
import { BaseCommand, type JsonEnvelope } from '../../src/cli/base-command.js';
import { TrustedMsError } from '../../src/errors.js';
import { POSTURES, type Posture } from '../../src/lab/posture.js';
import { RUNTIME_CHOICES, type RuntimeChoice } from '../../src/lab/runtimes/select.js';

export type AttackSimulateResult = AttackReport;

/** Exit status when a scenario's outcome differs from its expectation (docs/report.md). */
export const OUTCOME_MISMATCH_EXIT = 1;

export default class AttackSimulate extends BaseCommand {
  static override summary =
    'Run attack scenarios against the lab in one posture or all three, judged from evidence.';
  static override description =
    'Uses the lab running in --home when its posture is the one asked for; otherwise brings a lab up in a temporary home for that posture and takes it down after. Exits 1 when any outcome differs from its expectation; a scenario whose measurements cannot carry a verdict (a DoS flood the attacker could not deliver on a busy machine) is run once more, and if still inconclusive counts as differing. Report schema: docs/report.md.';
  static override strict = false;
  static override examples = [
    '<%= config.bin %> <%= command.id %> --all --posture all',
    '<%= config.bin %> <%= command.id %> masquerade.stolen-ticket --posture trusted',
    '<%= config.bin %> <%= command.id %> --all --posture all --junit attacks.xml --json',
    '<%= config.bin %> <%= command.id %> --all --posture all --runtime docker --services 4',
    '<%= config.bin %> <%= command.id %> --all --posture all --junit reports/attacks.xml --html reports/attacks.html',
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
    runtime: Flags.string({
      description:
        'what labs this command brings up run on (auto: Docker when an engine answers); a running lab in --home is used on its own runtime',
      options: [...RUNTIME_CHOICES],
      default: 'process',
    }),
    junit: Flags.string({ description: 'also write a JUnit XML report to this file' }),
    html: Flags.string({
      description: 'also write a self-contained HTML report (matrix, evidence, chart) to this file',
    }),
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
    // Checked before the run, which can take minutes, rather than failing at its end.
    for (const file of [flags.junit, flags.html]) if (file !== undefined) await assertWritableFolder(file);
    const say = (line: string) => process.stderr.write(this.jsonEnabled() ? '' : `  ${line}\n`);
    const report = await runAttacks({
      scenarios,
      postures,
      home: this.labHome(flags),
      services: flags.services,
      runtime: flags.runtime as RuntimeChoice,
      onProgress: say,
      onResult: (r) =>
        say(
          `${r.posture}: ${r.id} ${r.outcome}, ${r.passed ? 'as expected' : `expected ${r.expected}`} (${(r.durationMs / 1000).toFixed(1)} s)`,
        ),
    });
    this.log(renderMatrix(report));
    if (flags.junit) await writeReport(flags.junit, renderJunit(report));
    if (flags.html) await writeReport(flags.html, renderHtml(report));
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

async function assertWritableFolder(file: string): Promise<void> {
  const folder = dirname(resolve(file));
  const st = await stat(folder).catch(() => undefined);
  if (!st?.isDirectory()) {
    throw new TrustedMsError('USAGE', `cannot write ${file}: the folder ${folder} does not exist`, {
      actions: [`create it first: mkdir -p ${folder}`],
    });
  }
}

async function writeReport(file: string, text: string): Promise<void> {
  await writeFile(file, text).catch((err: NodeJS.ErrnoException) => {
    throw new TrustedMsError('REPORT_WRITE_FAILED', `cannot write ${file}: ${err.code ?? err.message}`, {
      actions: ['give a file in a folder you can write to'],
    });
  });
}
