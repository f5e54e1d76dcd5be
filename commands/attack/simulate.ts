import { stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { Args, Flags } from '@oclif/core';
import { dependences, renderDependences } from '../../src/attacks/ablation.js';
import { recoverAttackRun } from '../../src/attacks/journal.js';
import { findScenario, SCENARIOS } from '../../src/attacks/registry.js';
import { renderJunit, renderMatrix } from '../../src/attacks/report.js';
import { renderHtml } from '../../src/attacks/report-html.js';
import { type AttackReport, ablationVariants, runAttacks } from '../../src/attacks/runner.js';
import { BaseCommand, type JsonEnvelope } from '../../src/command-support/base-command.js';
import { onInterrupt } from '../../src/command-support/interrupt.js';
import { POSTURES, type Posture } from '../../src/defences/posture.js';
import { fileError, isDiskFault } from '../../src/disk-errors.js';
import { TrustedMsError } from '../../src/errors.js';
import { writeFileDurably } from '../../src/fs-sync.js';
import { RUNTIME_CHOICES, type RuntimeChoice } from '../../src/lab/runtimes/select.js';

export type AttackSimulateResult = AttackReport;

/** Exit status when a scenario's outcome differs from its expectation (docs/report.md). */
export const OUTCOME_MISMATCH_EXIT = 1;

/** The posture the ablation study removes defences from. */
const PRESET_ABLATED: Posture = 'trusted';

export default class AttackSimulate extends BaseCommand {
  static override summary =
    'Run attack scenarios against the lab in one posture or all three, judged from evidence.';
  static override description =
    "Uses the lab running in --home when its posture is the one asked for; otherwise brings a lab up in a temporary home for that posture and takes it down after. Exits 1 when any outcome differs from its expectation; a scenario whose measurements cannot carry a verdict (a DoS flood the attacker could not deliver on a busy machine) is run once more, and if still inconclusive counts as differing. Report schema: docs/report.md. Before each step it records in --home what it is about to change (labs it brings up, attack users, every service's code and config before each scenario). Signals: on SIGINT (Ctrl-C) or SIGTERM it reverts at once from that record and exits 130 or 143; after SIGKILL, the next `attack simulate` or `lab down` in the same home reverts it.";
  static override strict = false;
  static override examples = [
    '<%= config.bin %> <%= command.id %> --all --posture all',
    '<%= config.bin %> <%= command.id %> masquerade.stolen-ticket --posture trusted',
    '<%= config.bin %> <%= command.id %> --all --posture all --junit attacks.xml --json',
    '<%= config.bin %> <%= command.id %> --all --posture all --runtime docker --services 4',
    '<%= config.bin %> <%= command.id %> --all --posture all --junit reports/attacks.xml --html reports/attacks.html',
    '<%= config.bin %> <%= command.id %> --all --ablate --json > ablation.json',
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
    ablate: Flags.boolean({
      description:
        'the ablation study: trusted, then trusted less each removable defence in turn (lab up --without), and which defence each scenario depends on',
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
    if (flags.ablate && (postures.length !== 1 || postures[0] !== PRESET_ABLATED)) {
      throw new TrustedMsError('USAGE', '--ablate studies the trusted posture: leave --posture out', {
        actions: ['trusted-ms attack simulate --all --ablate'],
      });
    }
    // Checked before the run, which can take minutes, rather than failing at its end.
    for (const file of [flags.junit, flags.html]) if (file !== undefined) await assertWritableFolder(file);
    const say = (line: string) => process.stderr.write(this.jsonEnabled() ? '' : `  ${line}\n`);
    const home = this.labHome(flags);
    const revertOnSignal = onInterrupt(async () => {
      for (const line of (await recoverAttackRun(home, { own: true })).reverted) say(`reverted: ${line}`);
    }, say);
    const report = await runAttacks({
      scenarios,
      postures,
      ...(flags.ablate ? { variants: ablationVariants() } : {}),
      home,
      services: flags.services,
      runtime: flags.runtime as RuntimeChoice,
      onProgress: say,
      onResult: (r) =>
        say(
          `${r.variant}: ${r.id} ${r.outcome}, ${r.ablation ? 'ablation' : r.passed ? 'as expected' : `expected ${r.expected}`} (${(r.durationMs / 1000).toFixed(1)} s)`,
        ),
    }).finally(revertOnSignal);
    this.log(renderMatrix(report));
    if (flags.ablate) {
      this.log(renderDependences(report));
      report.dependences = dependences(report);
    }
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
  // Whole or not at all: a report cut by a full disk would pass for a report with fewer scenarios.
  await writeFileDurably(file, text, 0o644).catch((err: NodeJS.ErrnoException) => {
    if (isDiskFault(err)) throw fileError(file, 'write the report', err, { nothingChanged: false });
    throw new TrustedMsError('REPORT_WRITE_FAILED', `cannot write ${file}: ${err.code ?? err.message}`, {
      actions: ['give a file in a folder you can write to'],
    });
  });
}
