import { fileError } from '../../disk-errors.js';
import { TrustedMsError } from '../../errors.js';

/** The log (or a line of it) is not ours: refused, never written to. */
export function corrupt(file: string, why: string): TrustedMsError {
  return new TrustedMsError('STORE_CORRUPT', `${file} is not a valid trusted-ms audit log: ${why}`, {
    actions: [`run \`trusted-ms audit verify\` to see where`, 'the file was left untouched'],
  });
}

export function ioError(file: string, what: string, err: unknown): TrustedMsError {
  return fileError(file, what, err, { write: what !== 'read' });
}
