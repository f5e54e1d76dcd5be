import { constants as fsConstants } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { type ErrorCode, errnoCode, TrustedMsError } from '../errors.js';

export interface ReadSecretFileOptions {
  /** Larger files are refused unread (a PEM key is a few KiB). */
  maxBytes: number;
  /** The error for a file that does not exist (the caller knows what should have made it). */
  notFound: (path: string) => TrustedMsError;
  /** Code of an unreadable file; KEY_UNREADABLE by default. */
  unreadableCode?: ErrorCode;
  /** Code of something that is not a regular file (a folder, a FIFO); KEY_INVALID by default. */
  notRegularCode?: ErrorCode;
  /** A public file (a certificate) read with the same care but without the ssh mode rule. */
  shared?: boolean;
}

/**
 * Reads a small file holding a secret, with ssh's checks: opened O_NONBLOCK (a FIFO in its place
 * must not block us waiting for a writer), a regular file, at most `maxBytes`, and not accessible by
 * group or others (KEY_PERMISSIONS_TOO_OPEN, naming the chmod that fixes it). The checks run on the
 * opened handle, so the file cannot be swapped between the check and the read. Messages name the
 * file, never its content.
 */
export async function readSecretFile(path: string, opts: ReadSecretFileOptions): Promise<string> {
  const unreadable = opts.unreadableCode ?? 'KEY_UNREADABLE';

  let handle: FileHandle;
  try {
    handle = await open(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') throw opts.notFound(path);
    throw new TrustedMsError(unreadable, `cannot read ${path} (${code ?? 'error'})`, { cause: err });
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) {
      throw new TrustedMsError(opts.notRegularCode ?? 'KEY_INVALID', `${path} is not a regular file`);
    }
    if (!opts.shared && process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
      const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
      throw new TrustedMsError(
        'KEY_PERMISSIONS_TOO_OPEN',
        `permissions ${mode} for ${path} are too open: a private key must not be accessible by others; fix with: chmod 600 ${path}`,
        { actions: [`chmod 600 ${path}`] },
      );
    }
    if (st.size > opts.maxBytes)
      throw new TrustedMsError('KEY_INVALID', `${path} is too large to be a PEM file`);
    return await handle.readFile({ encoding: 'utf8' });
  } catch (err) {
    if (err instanceof TrustedMsError) throw err;
    throw new TrustedMsError(unreadable, `cannot read ${path} (${errnoCode(err) ?? 'error'})`, {
      cause: err,
    });
  } finally {
    await handle.close().catch(() => undefined);
  }
}
