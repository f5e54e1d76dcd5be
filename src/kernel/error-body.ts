import { ERROR_CODES, type ErrorCode, TrustedMsError } from '../errors.js';

/**
 * The lab's HTTP error contract as data, apart from the fastify app (http.ts) so that clients
 * (the CLI) can read a refusal without loading fastify.
 */

/** The body every refusal carries: a stable code and a short message, never a stack. */
export interface ErrorBody {
  code: ErrorCode;
  message: string;
}

export function errorBody(err: TrustedMsError): ErrorBody {
  return { code: err.code, message: err.message };
}

/** Maps a code received over HTTP back to an error, for clients of the lab's parts. */
export function fromErrorBody(status: number, body: unknown): TrustedMsError {
  const b = body as Partial<ErrorBody> | null;
  if (b && typeof b.code === 'string' && Object.hasOwn(ERROR_CODES, b.code)) {
    return new TrustedMsError(b.code as ErrorCode, String(b.message ?? b.code));
  }
  return new TrustedMsError(status >= 500 ? 'SERVICE_UNAVAILABLE' : 'INVALID_INPUT', `HTTP ${status}`);
}
