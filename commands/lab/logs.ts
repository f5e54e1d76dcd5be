import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../src/command-support/base-command.js';
import { TrustedMsError } from '../../src/errors.js';
import { requireLabState } from '../../src/kernel/lab-state.js';
import { runtimeFor } from '../../src/lab/runtimes/select.js';

export interface LabLogsResult {
  part: string;
  lines: string[];
}

export default class LabLogs extends BaseCommand {
  static override summary = 'Print the log of one part of the lab.';
  static override examples = [
    '<%= config.bin %> <%= command.id %> gateway',
    '<%= config.bin %> <%= command.id %> orders --follow',
    '<%= config.bin %> <%= command.id %> security --lines 100',
  ];
  static override args = {
    part: Args.string({ description: 'part name: security, gateway or a service', required: true }),
  };
  static override flags = {
    follow: Flags.boolean({ char: 'f', description: 'keep printing new lines until interrupted' }),
    lines: Flags.integer({ char: 'n', description: 'how many of the last lines', default: 50, min: 1 }),
  };

  async run(): Promise<LabLogsResult> {
    const { args, flags } = await this.parse(LabLogs);
    const state = await requireLabState(this.labHome(flags));
    const part = state.parts.find((p) => p.name === args.part);
    if (!part) {
      throw new TrustedMsError('SERVICE_NOT_FOUND', `no part named ${args.part}`, {
        actions: [`parts: ${state.parts.map((p) => p.name).join(', ')}`],
      });
    }
    // A container's log lives in the engine, a process's in its log file: the lab's runtime knows which.
    const runtime = await runtimeFor(state.runtime);
    if (flags.follow && !this.jsonEnabled()) {
      await runtime.followLog(part, flags.lines, (c) => process.stdout.write(c));
      return { part: part.name, lines: [] };
    }
    const lines = (await runtime.logTail(part, flags.lines)).split('\n').filter(Boolean);
    for (const line of lines) this.log(line);
    return { part: part.name, lines };
  }
}
