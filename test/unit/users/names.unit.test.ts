import { describe, expect, it } from 'vitest';
import { assertUserName } from '../../../src/users/names.js';

describe('assertUserName', () => {
  for (const ok of ['a', 'alice', 'bob.smith', 'c_3-x', `a${'b'.repeat(31)}`]) {
    it(`accepts ${ok}`, () => expect(() => assertUserName(ok)).not.toThrow());
  }
  for (const bad of [
    '',
    'Alice',
    '1bob',
    '-x',
    '.x',
    'a b',
    'a:b',
    'é',
    `a${'b'.repeat(32)}`,
    '__proto__',
    'a\n',
  ]) {
    it(`refuses ${JSON.stringify(bad)} with INVALID_NAME and the rule`, () => {
      expect(() => assertUserName(bad)).toThrow(
        expect.objectContaining({
          code: 'INVALID_NAME',
          message: expect.stringContaining('a lowercase letter'),
        }),
      );
    });
  }
  it('refuses a non-string', () => {
    expect(() => assertUserName(42)).toThrow(expect.objectContaining({ code: 'INVALID_NAME' }));
  });
});
