import { classifyHash, type HashFormat } from '../crypto/password.js';
import { TrustedMsError } from '../errors.js';
import { USER_NAME_RE, USER_NAME_RULE } from './names.js';

/**
 * Apache htpasswd files: one `name:hash` per line. Only bcrypt entries (`htpasswd -B`) are
 * accepted: the other formats Apache writes (MD5 `$apr1$`, `{SHA}`, crypt(3), plain text) are too
 * weak to carry over, and a file is imported whole or not at all.
 */

export interface HtpasswdEntry {
  /** 1-based line number in the file. */
  line: number;
  name: string;
  hash: string;
}

const FORMAT_LABEL: Record<HashFormat, string> = {
  scrypt: 'scrypt',
  bcrypt: 'bcrypt',
  apr1: 'Apache MD5 ($apr1$, htpasswd -m)',
  sha1: 'unsalted SHA-1 ({SHA}, htpasswd -s)',
  crypt: 'crypt(3) (htpasswd -d, -2 or -5)',
  plain: 'plain text (htpasswd -p)',
  unknown: 'unrecognised',
};

/** Longer files are refused before parsing (a lab holds tens of users, not millions). */
export const MAX_HTPASSWD_BYTES = 1024 * 1024;

function list(problems: string[]): string {
  return problems.map((p) => `\n  ${p}`).join('');
}

/** Parses the text of an htpasswd file; throws HTPASSWD_INVALID or HTPASSWD_UNSUPPORTED_FORMAT. */
export function parseHtpasswd(text: string): HtpasswdEntry[] {
  if (Buffer.byteLength(text, 'utf8') > MAX_HTPASSWD_BYTES) {
    throw new TrustedMsError('HTPASSWD_INVALID', `htpasswd file is larger than ${MAX_HTPASSWD_BYTES} bytes`);
  }
  const entries: HtpasswdEntry[] = [];
  const invalid: string[] = [];
  const unsupported: string[] = [];
  const firstLine = new Map<string, number>();

  text.split('\n').forEach((rawLine, i) => {
    const line = i + 1;
    const content = rawLine.endsWith('\r') ? rawLine.slice(0, -1) : rawLine;
    if (content.trim() === '' || content.trimStart().startsWith('#')) return;
    const colon = content.indexOf(':');
    if (colon < 0) {
      invalid.push(`line ${line}: expected name:hash`);
      return;
    }
    const name = content.slice(0, colon);
    const hash = content.slice(colon + 1).trimEnd();
    if (!USER_NAME_RE.test(name)) {
      // Never echo the rest of the line: it may be a plain-text password.
      invalid.push(`line ${line}: invalid user name ${JSON.stringify(name.slice(0, 40))}`);
      return;
    }
    if (hash === '') {
      invalid.push(`line ${line} (${name}): empty password hash`);
      return;
    }
    const seen = firstLine.get(name);
    if (seen !== undefined) {
      invalid.push(`line ${line} (${name}): duplicate user, first on line ${seen}`);
      return;
    }
    firstLine.set(name, line);
    const format = classifyHash(hash);
    if (format !== 'bcrypt') {
      unsupported.push(`line ${line} (${name}): ${FORMAT_LABEL[format]}`);
      return;
    }
    entries.push({ line, name, hash });
  });

  if (invalid.length > 0) {
    const also = unsupported.length > 0 ? `\nalso in an unsupported format:${list(unsupported)}` : '';
    throw new TrustedMsError('HTPASSWD_INVALID', `htpasswd file has invalid lines:${list(invalid)}${also}`, {
      actions: [`fix those lines; user names must be ${USER_NAME_RULE}`, 'nothing was imported'],
    });
  }
  if (unsupported.length > 0) {
    throw new TrustedMsError(
      'HTPASSWD_UNSUPPORTED_FORMAT',
      `only bcrypt htpasswd entries can be imported; these are not:${list(unsupported)}`,
      {
        actions: ['re-create those entries with `htpasswd -B`', 'nothing was imported'],
      },
    );
  }
  if (entries.length === 0) {
    throw new TrustedMsError('HTPASSWD_INVALID', 'htpasswd file has no entries', {
      actions: ['create entries with `htpasswd -B <file> <user>`'],
    });
  }
  return entries;
}
