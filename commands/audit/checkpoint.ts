import { Flags } from '@oclif/core';
import { BaseCommand } from '../../src/command-support/base-command.js';
import { resolveKeyDir } from '../../src/home.js';
import { type ExportedCheckpoint, exportCheckpoint } from '../../src/store/audit/export-checkpoint.js';

export default class AuditCheckpoint extends BaseCommand {
  static override summary = "Export the audit log's latest signed checkpoint, to keep outside the lab home.";
  static override description =
    `With audit:signed (trusted) the security service signs the log's head (size, last hash, lab time, log id) at least every 100 entries and every 10 s, and at lab down, with an audit key kept in the key folder. This prints the latest, its signature checked, or writes it to --out (0600). Keep the file somewhere an attacker of the lab home cannot reach; \`audit verify --checkpoint FILE\` later shows whether the log was rewritten, cut or reordered since. AUDIT_CHECKPOINT_MISSING (exit 6) when the home has no audit key or nothing was signed yet.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --out ~/safe/audit-head.json',
    '<%= config.bin %> <%= command.id %> --key-dir ./keys --json',
  ];
  static override flags = {
    out: Flags.string({ description: 'write the checkpoint to this file (mode 0600)' }),
    'key-dir': Flags.string({
      description:
        "the key folder holding the lab's audit key [default: $TRUSTED_MS_KEYS or ~/.trusted-ms/keys]",
    }),
  };

  async run(): Promise<ExportedCheckpoint> {
    const { flags } = await this.parse(AuditCheckpoint);
    const exported = await exportCheckpoint(this.labHome(flags), resolveKeyDir(flags['key-dir']), flags.out);
    const c = exported.checkpoint;
    this.log(
      flags.out
        ? `wrote the checkpoint of ${c.size} entries at ${c.at} (head ${c.head}) to ${flags.out}`
        : JSON.stringify(c),
    );
    return exported;
  }
}
