import { TrustedMsError } from '../errors.js';

export const USER_NAME_RE = /^[a-z][a-z0-9._-]{0,31}$/;
export const USER_NAME_RULE =
  'a lowercase letter, then up to 31 lowercase letters, digits, dots, underscores or hyphens';

export function isUserName(name: unknown): name is string {
  return typeof name === 'string' && USER_NAME_RE.test(name);
}

/** Throws INVALID_NAME unless `name` matches `^[a-z][a-z0-9._-]{0,31}$`. */
export function assertUserName(name: unknown): asserts name is string {
  if (!isUserName(name)) {
    const shown = typeof name === 'string' ? JSON.stringify(name.slice(0, 64)) : typeof name;
    throw new TrustedMsError('INVALID_NAME', `invalid user name ${shown}: use ${USER_NAME_RULE}`, {
      actions: [`pick a name matching ${USER_NAME_RE.source}`],
    });
  }
}
