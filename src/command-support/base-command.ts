import { Command, Flags } from '@oclif/core';
import chalk from 'chalk';
import { diskFaultOf } from '../disk-errors.js';
import { type ErrorCode, TrustedMsError } from '../errors.js';
import { resolveLabHome } from '../home.js';

export type JsonEnvelope<T> =
  | { status: 0; result: T }
  | { status: number; error: ReturnType<TrustedMsError['toJSON']> };

/**
 * What every trusted-ms command shares: `--json` with one envelope for success and failure,
 * `--home`, and errors printed as one line with a stable code (the stack only under DEBUG).
 */
export abstract class BaseCommand extends Command {
  static override enableJsonFlag = true;

  static override baseFlags = {
    home: Flags.string({
      description: 'Lab home folder holding the store [default: $TRUSTED_MS_HOME or ./.trusted-ms]',
      helpGroup: 'GLOBAL',
    }),
  };

  protected labHome(flags: { home?: string | undefined }): string {
    return resolveLabHome(flags.home);
  }

  protected override toSuccessJson(result: unknown): JsonEnvelope<unknown> {
    return { status: 0, result };
  }

  // Plain JSON: a stable machine interface, never colored.
  override logJson(json: unknown): void {
    process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
  }

  protected override async catch(err: Error & { oclif?: { exit?: number } }): Promise<void> {
    if (err.oclif?.exit !== undefined && (err as { code?: string }).code === 'EEXIT') throw err;
    const error = asTrustedMsError(err);
    process.exitCode = error.exitCode;
    if (this.jsonEnabled()) {
      this.logJson({ status: error.exitCode, error: error.toJSON() } satisfies JsonEnvelope<never>);
      return;
    }
    process.stderr.write(`${chalk.red('Error')} [${error.code}]: ${error.message}\n`);
    for (const action of error.actions) process.stderr.write(`  ${chalk.dim('→')} ${action}\n`);
    if (process.env.DEBUG) process.stderr.write(`${err.stack ?? ''}\n`);
  }
}

/** oclif's own parse errors become USAGE; anything unforeseen is INTERNAL, i.e. a bug. */
export function asTrustedMsError(err: unknown): TrustedMsError {
  if (err instanceof TrustedMsError) return err;
  const e = err as Error & { oclif?: { exit?: number } };
  if (e?.oclif?.exit === 2 || /Parse|Flag|Args|Arg/.test(e?.constructor?.name ?? '')) {
    return new TrustedMsError('USAGE', firstLine(e.message), {
      actions: ['see --help for usage and examples'],
    });
  }
  // A full or read-only disk under a write that no caller mapped: still the disk's error, not a bug.
  const disk = diskFaultOf(err);
  if (disk !== undefined) return disk;
  const code: ErrorCode = 'INTERNAL';
  return new TrustedMsError(code, `unexpected error: ${firstLine(String(e?.message ?? err))}`, {
    actions: ['run again with DEBUG=1 to see where it happened, and report it'],
    cause: err,
  });
}

function firstLine(s: string): string {
  return s.split('\n').find((l) => l.trim() !== '') ?? s;
}
