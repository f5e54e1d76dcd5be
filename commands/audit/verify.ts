import chalk from 'chalk';
import { BaseCommand } from '../../src/command-support/base-command.js';
import { TrustedMsError } from '../../src/errors.js';
import type { AuditVerifyResult } from '../../src/store/audit/verify.js';
import { openLabStore } from '../../src/store/open.js';

export default class AuditVerify extends BaseCommand {
  static override summary = "Check the audit log's hash chain: find edited, removed or reordered entries.";
  static override description =
    'Each audit entry carries the SHA-256 of the one before it. This walks the whole log and names every entry (by index and id) where the chain breaks. Exits 6 (AUDIT_TAMPERED) when it does. Entries cut off at the end cannot be seen by the chain alone: keep the printed head hash elsewhere and compare.';
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --home ./lab-home --json',
  ];

  async run(): Promise<AuditVerifyResult> {
    const { flags } = await this.parse(AuditVerify);
    const result = await openLabStore(this.labHome(flags)).verifyAudit();
    if (result.legacyEntries !== undefined) {
      this.log(
        `${result.file} does not exist yet; ${result.legacyEntries} legacy entries in audit.json are chained on the next write.`,
      );
    }
    for (const p of result.problems) this.log(`${chalk.red(p.kind.padEnd(12))} ${p.message}`);
    this.log(
      result.ok
        ? `${chalk.green('ok')}: ${result.entries} entries, chain intact, head ${result.head}`
        : `${chalk.red('tampered')}: ${result.problems.length} problem(s) in ${result.entries} entries`,
    );
    if (!result.ok) {
      const first = result.problems[0];
      const err = new TrustedMsError(
        'AUDIT_TAMPERED',
        `the audit log's hash chain is broken at entry ${first?.index} (${first?.id ?? 'unreadable'}): ${first?.kind}`,
        { actions: [`inspect ${result.file} around that entry; restore it from a backup if you have one`] },
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
