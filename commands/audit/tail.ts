import { Flags } from '@oclif/core';
import { formatAuditRecord } from '../../src/command-support/audit-format.js';
import { BaseCommand } from '../../src/command-support/base-command.js';
import { TrustedMsError } from '../../src/errors.js';
import type { AuditRecord } from '../../src/store/audit/record.js';
import { openLabStore } from '../../src/store/open.js';

export default class AuditTail extends BaseCommand {
  static override summary = 'Show the last entries of the audit log, and optionally follow it.';
  static override description =
    'With --follow, new entries are printed as they are written until Ctrl-C; with --json they are then printed one JSON object per line (JSON Lines) instead of one envelope.';
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> -n 50 --json',
    '<%= config.bin %> <%= command.id %> --follow',
  ];
  static override flags = {
    lines: Flags.integer({ char: 'n', description: 'how many entries to show', default: 10, min: 0 }),
    follow: Flags.boolean({ char: 'f', description: 'keep printing new entries until interrupted' }),
  };

  async run(): Promise<AuditRecord[]> {
    const { flags } = await this.parse(AuditTail);
    if (flags.lines > 100_000) throw new TrustedMsError('USAGE', '--lines is at most 100000');
    const log = openLabStore(this.labHome(flags)).auditLog;
    const start = await log.size();
    const last = await log.last(flags.lines);
    if (!flags.follow) {
      for (const r of last) this.log(formatAuditRecord(r));
      return last;
    }
    const json = this.jsonEnabled();
    const print = (r: AuditRecord) =>
      process.stdout.write(`${json ? JSON.stringify(r) : formatAuditRecord(r)}\n`);
    for (const r of last) print(r);
    const stop = new AbortController();
    const onSignal = () => stop.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      // `last` was read after `start`: an entry appended in between comes twice and is skipped by id.
      for await (const r of log.follow(start, stop.signal)) {
        if (last.some((l) => l.id === r.id)) continue;
        print(r);
      }
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
    // The entries were streamed already: nothing more to print, not even a JSON envelope.
    this.exit(0);
    return last;
  }
}
