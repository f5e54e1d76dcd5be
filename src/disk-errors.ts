import { dirname } from 'node:path';
import { errnoCode, isTrustedMsError, TrustedMsError } from './errors.js';

/**
 * Faults of the disk under a write, mapped to one error wherever the project writes (store, audit
 * log, session files, keys, lab state, logs, reports): DISK_FULL or DISK_READ_ONLY, naming the file,
 * the OS's cause and what fixes it. Any other failure stays STORE_IO, with its cause kept.
 */

const FULL = new Set(['ENOSPC', 'EDQUOT']);
const READ_ONLY = new Set(['EROFS']);
const DENIED = new Set(['EACCES', 'EPERM']);

const CAUSES: Record<string, string> = {
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
};

/** True for an error (or a TrustedMsError) that is a full or read-only disk. */
export function isDiskFault(err: unknown): boolean {
  if (isTrustedMsError(err)) return err.code === 'DISK_FULL' || err.code === 'DISK_READ_ONLY';
  const code = errnoCode(err);
  return code !== undefined && (FULL.has(code) || READ_ONLY.has(code));
}

/**
 * The error for a failed file operation. `what` says what was being done ("write", "append to");
 * `write` is false for reads, where EACCES is not a read-only disk. A TrustedMsError passes through.
 */
export function fileError(
  path: string,
  what: string,
  err: unknown,
  opts: { write?: boolean; nothingChanged?: boolean } = {},
): TrustedMsError {
  if (isTrustedMsError(err)) return err;
  const write = opts.write !== false;
  const code = errnoCode(err);
  const folder = dirname(path);
  const cause = code === undefined ? errorText(err) : `${code}: ${CAUSES[code] ?? errorText(err)}`;
  const kept =
    opts.nothingChanged === false
      ? []
      : [`nothing was changed: run the same command again once this is fixed`];
  if (code !== undefined && FULL.has(code)) {
    return new TrustedMsError('DISK_FULL', `cannot ${what} ${path}: the disk is full (${cause})`, {
      cause: err,
      actions: [`free space on the file system holding ${folder} (see \`df -h ${folder}\`)`, ...kept],
    });
  }
  if (code !== undefined && (READ_ONLY.has(code) || (write && DENIED.has(code)))) {
    const why = READ_ONLY.has(code)
      ? `the file system holding ${folder} is mounted read-only: remount it read-write (see \`findmnt -T ${folder}\`), or use another lab home with --home`
      : `this user may not write in ${folder}: fix its owner or mode, or use another lab home with --home`;
    return new TrustedMsError('DISK_READ_ONLY', `cannot ${what} ${path}: not writable (${cause})`, {
      cause: err,
      actions: [why, ...kept],
    });
  }
  return new TrustedMsError('STORE_IO', `cannot ${what} ${path}: ${cause}`, {
    cause: err,
    actions: [`check that ${folder} exists and is ${write ? 'writable' : 'readable'} by this user`],
  });
}

/**
 * An error escaping to the CLI or an HTTP answer that is a disk fault Node reported with its path
 * (`err.path`): the same error as from `fileError`, never INTERNAL. Anything else: undefined.
 */
export function diskFaultOf(err: unknown): TrustedMsError | undefined {
  if (isTrustedMsError(err) || !isDiskFault(err)) return undefined;
  const path = (err as { path?: unknown }).path;
  return fileError(typeof path === 'string' ? path : 'a file', 'write', err, { nothingChanged: false });
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
