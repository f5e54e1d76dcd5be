import Fastify, { type FastifyError, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { ERROR_CODES, type ErrorCode, TrustedMsError } from '../errors.js';

export const BODY_LIMIT = 64 * 1024;

/** The body every refusal carries: a stable code and a short message, never a stack. */
export interface ErrorBody {
  code: ErrorCode;
  message: string;
}

export function errorBody(err: TrustedMsError): ErrorBody {
  return { code: err.code, message: err.message };
}

/**
 * A fastify app with the lab's error contract: a TrustedMsError becomes its HTTP status and code;
 * schema, JSON and size errors become 4xx with a code; only a real bug is a 500.
 */
export function createHttpApp(
  opts: Partial<FastifyServerOptions> & { https?: object } = {},
): FastifyInstance {
  const app = Fastify({
    logger: false,
    bodyLimit: BODY_LIMIT,
    // Errors fastify raises before routing (an over-long path parameter, a bad %-escape) get a
    // lab code too, instead of fastify's own 414/400 body.
    frameworkErrors: (
      error: FastifyError,
      _request: unknown,
      reply: { code(n: number): { send(b: unknown): void } },
    ) => {
      reply.code(400).send({
        code: 'INVALID_INPUT',
        message: error.code === 'FST_ERR_BAD_URL' ? 'malformed URL' : error.message,
      });
    },
    ...opts,
    ajv: {
      ...opts.ajv,
      customOptions: {
        // Performance: not checking our own route schemas against the JSON Schema meta-schema at
        // every start saves compiling that meta-schema, ~40 % of a lab service's start-up CPU in a
        // profile (x20 services per lab). The schemas are fixed in the code and exercised by tests;
        // requests are still validated against them as before.
        validateSchema: false,
        ...opts.ajv?.customOptions,
      },
    },
  } as FastifyServerOptions) as unknown as FastifyInstance;
  app.setErrorHandler((err: FastifyError, request, reply) => {
    const known = toHttpError(err);
    if (known.httpStatus >= 500) request.log?.error?.(err);
    reply.code(known.httpStatus).send(errorBody(known));
  });
  app.setNotFoundHandler((request, reply) => {
    reply
      .code(404)
      .send({ code: 'ROUTE_NOT_FOUND', message: `no route ${request.method} ${request.url.split('?')[0]}` });
  });
  return app;
}

export function toHttpError(err: unknown): TrustedMsError {
  if (err instanceof TrustedMsError) return err;
  const e = err as FastifyError;
  if (e?.validation) return new TrustedMsError('INVALID_INPUT', e.message);
  if (e?.code === 'FST_ERR_CTP_BODY_TOO_LARGE')
    return new TrustedMsError('PAYLOAD_TOO_LARGE', 'request body too large');
  if (typeof e?.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return new TrustedMsError('INVALID_INPUT', e.message);
  }
  return new TrustedMsError('INTERNAL', 'internal error');
}

/** Maps a code received over HTTP back to an error, for clients of the lab's parts. */
export function fromErrorBody(status: number, body: unknown): TrustedMsError {
  const b = body as Partial<ErrorBody> | null;
  if (b && typeof b.code === 'string' && Object.hasOwn(ERROR_CODES, b.code)) {
    return new TrustedMsError(b.code as ErrorCode, String(b.message ?? b.code));
  }
  return new TrustedMsError(status >= 500 ? 'SERVICE_UNAVAILABLE' : 'INVALID_INPUT', `HTTP ${status}`);
}
