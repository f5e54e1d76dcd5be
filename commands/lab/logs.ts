import { open, stat } from 'node:fs/promises';
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
    if (part.containerId) {
      // A container's log lives in the engine.
      const { DockerRuntime } = await import('../../src/lab/runtimes/docker.js');
      const runtime = (await runtimeFor('docker')) as InstanceType<typeof DockerRuntime>;
      if (flags.follow && !this.jsonEnabled()) {
        await runtime.followLog(part, flags.lines, (c) => process.stdout.write(c));
        return { part: part.name, lines: [] };
      }
      const lines = (await runtime.logTail(part, flags.lines)).split('\n').filter(Boolean);
      for (const line of lines) this.log(line);
      return { part: part.name, lines };
    }
    const file = await open(part.logFile, 'r');
    try {
      const text = (await file.readFile('utf8')).split('\n').filter(Boolean);
      const lines = text.slice(-flags.lines);
      for (const line of lines) this.log(line);
      if (flags.follow && !this.jsonEnabled()) {
        let offset = (await stat(part.logFile)).size;
        for (;;) {
          await new Promise((r) => setTimeout(r, 250));
          const size = (await stat(part.logFile)).size;
          if (size > offset) {
            const buf = Buffer.alloc(size - offset);
            await file.read(buf, 0, buf.length, offset);
            process.stdout.write(buf);
            offset = size;
          }
        }
      }
      return { part: part.name, lines };
    } finally {
      await file.close();
    }
  }
}
