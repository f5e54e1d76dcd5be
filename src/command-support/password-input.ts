import { TrustedMsError } from '../errors.js';

/** Reads a password from standard input: everything up to EOF, one trailing newline removed. */
export async function readPasswordFromStdin(stdin: NodeJS.ReadableStream = process.stdin): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stdin) chunks.push(Buffer.from(chunk as Buffer));
  const text = Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
  if (text === '') throw new TrustedMsError('PASSWORD_REQUIRED', 'standard input held no password');
  return text;
}

/**
 * The password for a command: from standard input with `--password-stdin`, else from a hidden
 * prompt when there is a terminal. Never from a flag, which would leak into shell history and `ps`.
 */
export async function obtainPassword(opts: {
  stdin: boolean;
  confirm: boolean;
  user: string;
}): Promise<string> {
  if (opts.stdin) return readPasswordFromStdin();
  if (!process.stdin.isTTY) {
    throw new TrustedMsError('PASSWORD_REQUIRED', 'no terminal to ask for a password', {
      actions: ['pipe it in with --password-stdin, e.g. printf %s "$PW" | trusted-ms user add ...'],
    });
  }
  const { default: password } = await import('@inquirer/password');
  const first = await password({ message: `Password for ${opts.user}:`, mask: true });
  if (first === '') throw new TrustedMsError('PASSWORD_REQUIRED', 'an empty password is not allowed');
  if (opts.confirm) {
    const again = await password({ message: 'Again:', mask: true });
    if (again !== first) throw new TrustedMsError('INVALID_INPUT', 'the two passwords differ');
  }
  return first;
}

/** The passphrase from standard input, else a hidden prompt when there is a terminal, else none. */
export function passphraseSource(
  given: string | undefined,
  file: string,
): (() => Promise<string>) | undefined {
  if (given !== undefined) return async () => given;
  if (!process.stdin.isTTY) return undefined;
  return async () => {
    const { default: password } = await import('@inquirer/password');
    const p = await password({ message: `Passphrase for ${file}:`, mask: true });
    if (p === '') throw new TrustedMsError('KEY_PASSPHRASE_REQUIRED', 'an empty passphrase was given');
    return p;
  };
}
