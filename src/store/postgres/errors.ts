import { errnoCode, isTrustedMsError, TrustedMsError } from '../../errors.js';

/**
 * PostgreSQL's and the `pg` client's failures as our codes. What the user gets is one line naming
 * the server (its URL without the password) and what to do; the driver's error stays as `cause`.
 */

/** SQLSTATE classes of a refused login: invalid_authorization_specification, invalid_password. */
const AUTH_STATES = new Set(['28000', '28P01']);
/** The connection cannot be used: connection_exception (08), shutdown (57P01-03), too many (53300). */
const UNAVAILABLE_CLASSES = ['08', '57P'];
const UNAVAILABLE_STATES = new Set(['53300', '3D000']);
const NETWORK_ERRNOS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
]);

/** The URL with its password replaced, fit for messages, logs and `lab status`. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return '(an unparsable URL)';
  }
}

function sqlState(err: unknown): string | undefined {
  const code = errnoCode(err);
  return code !== undefined && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

function text(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Whether `err` came from the server or the connection to it (as opposed to a caller's own error). */
export function isDatabaseError(err: unknown): boolean {
  if (isTrustedMsError(err)) return false;
  if (sqlState(err) !== undefined) return true;
  const code = errnoCode(err);
  if (code !== undefined && NETWORK_ERRNOS.has(code)) return true;
  return /connection|timeout|terminated|SASL|password/i.test(text(err));
}

/** `err` (from `pg` or the network) as STORE_AUTH_FAILED, STORE_UNAVAILABLE or STORE_IO. */
export function storeErrorOf(url: string, err: unknown): TrustedMsError {
  if (isTrustedMsError(err)) return err;
  const where = redactUrl(url);
  const state = sqlState(err);
  const cause = text(err);
  if ((state !== undefined && AUTH_STATES.has(state)) || /SASL|password/i.test(cause)) {
    return new TrustedMsError(
      'STORE_AUTH_FAILED',
      `the PostgreSQL store at ${where} refused the lab's credentials (${cause})`,
      {
        cause: err,
        actions: [
          "check the user and password in --store-url (or the lab home's postgres-password file)",
          'nothing was changed',
        ],
      },
    );
  }
  const network = errnoCode(err);
  if (
    (state !== undefined &&
      (UNAVAILABLE_STATES.has(state) || UNAVAILABLE_CLASSES.some((c) => state.startsWith(c)))) ||
    (network !== undefined && NETWORK_ERRNOS.has(network)) ||
    /connect|timeout|terminated/i.test(cause)
  ) {
    return new TrustedMsError(
      'STORE_UNAVAILABLE',
      `the PostgreSQL store at ${where} is not available (${network ?? state ?? cause})`,
      {
        cause: err,
        actions: [
          'start the lab (`trusted-ms lab up --store postgres`), or the server --store-url names',
          'nothing was changed: run the same command again once it answers',
        ],
      },
    );
  }
  return new TrustedMsError(
    'STORE_IO',
    `the PostgreSQL store at ${where} failed: ${state ?? ''} ${cause}`.replace('  ', ' '),
    {
      cause: err,
      actions: ['nothing was changed'],
    },
  );
}
