import { constants } from 'node:fs';
import { access, mkdir, readdir, stat } from 'node:fs/promises';
import { errnoCode, TrustedMsError } from '../errors.js';

/**
 * Makes the export's folder ready: created when missing, refused when it holds anything unless
 * `force` (an export never mixes with files it did not write: a stale manifest left beside new
 * ones would be applied too), and refused with its cause when it cannot be written.
 */
export async function prepareOutDir(dir: string, force: boolean): Promise<void> {
  const notWritable = (cause: string, err?: unknown) =>
    new TrustedMsError('EXPORT_DIR_NOT_WRITABLE', `cannot write the export to ${dir}: ${cause}`, {
      actions: ['give --out a folder you can write'],
      ...(err === undefined ? {} : { cause: err }),
    });
  const existing = await stat(dir).catch((err: unknown) => {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw notWritable(errnoCode(err) ?? 'cannot read it', err);
  });
  if (existing === undefined) {
    await mkdir(dir, { recursive: true }).catch((err: unknown) => {
      throw notWritable(errnoCode(err) ?? 'cannot create it', err);
    });
    return;
  }
  if (!existing.isDirectory()) throw notWritable('it is not a folder');
  await access(dir, constants.W_OK).catch((err: unknown) => {
    throw notWritable(errnoCode(err) ?? 'not writable', err);
  });
  const entries = await readdir(dir);
  if (entries.length > 0 && !force) {
    throw new TrustedMsError('EXPORT_DIR_NOT_EMPTY', `${dir} is not empty (${entries.length} entries)`, {
      actions: ['give an empty or new folder to --out', 'or add --force to write over what is there'],
    });
  }
}
