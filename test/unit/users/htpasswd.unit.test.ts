import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { isTrustedMsError, type TrustedMsError } from '../../../src/errors.js';
import { parseHtpasswd } from '../../../src/users/htpasswd.js';

const fixture = (name: string) =>
  readFileSync(new URL(`../../../fixtures/htpasswd/${name}`, import.meta.url), 'utf8');
const BC = '$2y$05$nbVVKOtRM3y5remEU4V7HuB4uu2aCEVlrsejWuYFc/zgMfJvlorYC';

function errorOf(text: string): TrustedMsError {
  try {
    parseHtpasswd(text);
  } catch (err) {
    if (isTrustedMsError(err)) return err;
    throw err;
  }
  throw new Error('expected parseHtpasswd to throw');
}

describe('parseHtpasswd', () => {
  it('reads the bcrypt fixture made by htpasswd -B', () => {
    const entries = parseHtpasswd(fixture('bcrypt.htpasswd'));
    expect(entries.map((e) => [e.line, e.name])).toEqual([
      [1, 'carol'],
      [2, 'dave'],
    ]);
    expect(entries[0]!.hash).toMatch(/^\$2y\$05\$.{53}$/);
  });

  it('skips blank lines and comments, tolerates CRLF, and keeps line numbers', () => {
    const text = `# users\r\n\r\ncarol:${BC}\r\n   \r\n  # indented comment\r\ndave:${BC}\r\n`;
    expect(parseHtpasswd(text).map((e) => [e.line, e.name, e.hash])).toEqual([
      [3, 'carol', BC],
      [6, 'dave', BC],
    ]);
  });

  it('refuses the mixed fixture, listing every non-bcrypt line with its user and format', () => {
    const err = errorOf(fixture('mixed.htpasswd'));
    expect(err.code).toBe('HTPASSWD_UNSUPPORTED_FORMAT');
    expect(err.message).toMatch(/line 1 \(erin\): Apache MD5/);
    expect(err.message).toMatch(/line 2 \(frank\): unsalted SHA-1/);
    expect(err.message).toMatch(/line 3 \(grace\): crypt\(3\)/);
    expect(err.message).toMatch(/line 4 \(heidi\): plain text/);
    expect(err.message).not.toMatch(/ivan/);
    expect(err.message).not.toMatch(/heidi-pass-6/); // never echo a plain-text password
    expect(err.actions).toContain('re-create those entries with `htpasswd -B`');
  });

  it('refuses malformed lines with HTPASSWD_INVALID and their line numbers', () => {
    const err = errorOf(`carol:${BC}\nno-colon-here\n\nBad Name:${BC}\nemptyhash:\ncarol:${BC}\n`);
    expect(err.code).toBe('HTPASSWD_INVALID');
    expect(err.message).toMatch(/line 2: expected name:hash/);
    expect(err.message).toMatch(/line 4: invalid user name "Bad Name"/);
    expect(err.message).toMatch(/line 5 \(emptyhash\): empty password hash/);
    expect(err.message).toMatch(/line 6 \(carol\): duplicate user, first on line 1/);
  });

  it('reports malformed lines first, and mentions unsupported ones too', () => {
    const err = errorOf(`x\nerin:$apr1$gnjjEeqL$Iv0QG75nj4WfRk0jSybP50\n`);
    expect(err.code).toBe('HTPASSWD_INVALID');
    expect(err.message).toMatch(/line 2 \(erin\): Apache MD5/);
  });

  it('refuses a file with no entries', () => {
    expect(errorOf('# nothing\n\n').code).toBe('HTPASSWD_INVALID');
    expect(errorOf('').code).toBe('HTPASSWD_INVALID');
  });

  it('refuses a malformed bcrypt-looking hash as unsupported', () => {
    const err = errorOf('carol:$2y$05$short\n');
    expect(err.code).toBe('HTPASSWD_UNSUPPORTED_FORMAT');
    expect(err.message).toMatch(/line 1 \(carol\): unrecognised/);
  });
});
