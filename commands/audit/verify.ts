import { readFile } from 'node:fs/promises';
import { Flags } from '@oclif/core';
import chalk from 'chalk';
import { BaseCommand } from '../../src/command-support/base-command.js';
import { fileError } from '../../src/disk-errors.js';
import { TrustedMsError } from '../../src/errors.js';
import { resolveKeyDir } from '../../src/home.js';
import { checkpointError } from '../../src/store/audit/checkpoint.js';
import { auditKeyFiles } from '../../src/store/audit/checkpoint-files.js';
import type { AuditVerifyResult } from '../../src/store/audit/verify.js';
import { verifyLabCheckpoints } from '../../src/store/audit/verify-checkpoints.js';
import { openLabStore } from '../../src/store/open.js';

export type AuditVerifyCommandResult = AuditVerifyResult & {
  /** audit:signed: the log against the signed checkpoints (the home's, and --checkpoint) */
  checkpoints?: Awaited<ReturnType<typeof verifyLabCheckpoints>>;
  /** the failure's code, when the log failed a check (the exit code says the same) */
  code?: string;
};

export default class AuditVerify extends BaseCommand {
  static override summary =
    'Check the audit log: its hash chain, and (audit:signed) that it still extends every signed checkpoint.';
  static override description =
    `Each audit entry carries the SHA-256 of the one before it: this walks the whole log and names every entry (by index and id) where the chain breaks (AUDIT_TAMPERED, exit 6).

The chain alone cannot show a history rewritten with every hash recomputed, nor entries cut off at the end. With audit:signed (trusted), the security service signs a checkpoint of the log's head (size, last hash, lab time) at least every 100 entries and every 10 s, and at lab down, with an audit key kept in the key folder, out of the lab home; this command checks every one of them, and the checkpoint FILE you kept (\`audit checkpoint --out\`): a log shorter than a checkpoint is AUDIT_TRUNCATED, one whose record at the checkpoint's size differs is AUDIT_TAMPERED (rewritten, removed or reordered), a checkpoint whose signature fails is AUDIT_CHECKPOINT_INVALID. All exit 6.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --checkpoint ~/safe/audit-head.json',
    '<%= config.bin %> <%= command.id %> --home ./lab-home --key-dir ./keys --json',
  ];
  static override flags = {
    checkpoint: Flags.string({
      description: 'a checkpoint exported earlier (`audit checkpoint --out`): the log must still extend it',
    }),
    'key-dir': Flags.string({
      description:
        "the key folder holding the lab's audit key [default: $TRUSTED_MS_KEYS or ~/.trusted-ms/keys]",
    }),
  };

  async run(): Promise<AuditVerifyCommandResult> {
    const { flags } = await this.parse(AuditVerify);
    const home = this.labHome(flags);
    const store = openLabStore(home);
    const result: AuditVerifyCommandResult = await store.verifyAudit();
    if (result.legacyEntries !== undefined) {
      this.log(
        `${result.file} does not exist yet; ${result.legacyEntries} legacy entries in audit.json are chained on the next write.`,
      );
    }
    for (const p of result.problems) this.log(`${chalk.red(p.kind.padEnd(12))} ${p.message}`);
    if (!result.ok) {
      const first = result.problems[0];
      return this.fail(
        result,
        new TrustedMsError(
          'AUDIT_TAMPERED',
          `the audit log's hash chain is broken at entry ${first?.index} (${first?.id ?? 'unreadable'}): ${first?.kind}`,
          { actions: [`inspect ${result.file} around that entry; restore it from a backup if you have one`] },
        ),
      );
    }
    const given = flags.checkpoint
      ? {
          file: flags.checkpoint,
          text: await readFile(flags.checkpoint, 'utf8').catch((err: unknown) => {
            throw fileError(flags.checkpoint as string, 'read', err);
          }),
        }
      : undefined;
    const checkpoints = await verifyLabCheckpoints(
      () => store.auditRecords(),
      auditKeyFiles(resolveKeyDir(flags['key-dir']), home),
      given,
    );
    if (checkpoints) result.checkpoints = checkpoints;
    const problem = checkpoints?.problems[0];
    if (checkpoints && problem) {
      for (const p of checkpoints.problems.slice(0, 5))
        this.log(`${chalk.red(p.kind.padEnd(12))} ${p.message}`);
      if (checkpoints.problems.length > 5)
        this.log(`… and ${checkpoints.problems.length - 5} more checkpoint(s)`);
      result.ok = false;
      return this.fail(result, checkpointError(problem));
    }
    this.log(`${chalk.green('ok')}: ${result.entries} entries, chain intact, head ${result.head}`);
    if (checkpoints) {
      const latest = checkpoints.latest;
      this.log(
        latest
          ? `${chalk.green('ok')}: extends all ${checkpoints.checked} signed checkpoint(s), the latest of ${latest.size} entries at ${latest.at}`
          : `no signed checkpoint yet in ${checkpoints.checkpointsFile}`,
      );
    } else {
      this.log(
        chalk.dim(
          'no audit key for this home (audit:chain): a rewrite with a recomputed chain, or a cut-off tail, would pass',
        ),
      );
    }
    return result;
  }

  fail(result: AuditVerifyCommandResult, err: TrustedMsError): AuditVerifyCommandResult {
    result.code = err.code;
    if (this.jsonEnabled()) {
      process.exitCode = err.exitCode;
      return result;
    }
    throw err;
  }
}
