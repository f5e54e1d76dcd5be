import { type IncomingMessage, type ServerResponse, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { diskFaultOf } from '../disk-errors.js';
import { TrustedMsError } from '../errors.js';
import { errorBody } from '../kernel/error-body.js';

export const BODY_LIMIT = 64 * 1024;

/**
 * What every server of the lab (security service, gateway, services, sink) allows a client, so that
 * a slow or flooding client holds a socket for a bounded time only (slowloris). Node's defaults are
 * far looser: 60 s for headers, 300 s for a request, the check that enforces them every 30 s, and no
 * idle or connection cap.
 */
export const SERVER_LIMITS = {
  /** the whole header section must arrive within this, however slowly it trickles */
  headersTimeoutMs: 10_000,
  /** the whole request, body included */
  requestTimeoutMs: 30_000,
  /** how often Node checks the two above: the most a slow socket outlives its deadline */
  connectionsCheckingIntervalMs: 1_000,
  /** a socket with no traffic at all while a request is in progress */
  idleTimeoutMs: 60_000,
  /** between requests on a kept-alive socket (above the gateway pool's 30 s, so it closes first) */
  keepAliveTimeoutMs: 72_000,
  maxHeaderSize: 16 * 1024,
  /** open sockets per server; more are refused at accept (below the 20,000 descriptors a part has) */
  maxConnections: 4096,
} as const;

export { type ErrorBody, errorBody, fromErrorBody } from '../kernel/error-body.js';

/**
 * A fastify app with the lab's error contract: a TrustedMsError becomes its HTTP status and code;
 * schema, JSON and size errors become 4xx with a code; only a real bug is a 500.
 */
export function createHttpApp(
  opts: Partial<FastifyServerOptions> & { https?: object } = {},
): FastifyInstance {
  const serverOptions = {
    headersTimeout: SERVER_LIMITS.headersTimeoutMs,
    requestTimeout: SERVER_LIMITS.requestTimeoutMs,
    connectionsCheckingInterval: SERVER_LIMITS.connectionsCheckingIntervalMs,
    maxHeaderSize: SERVER_LIMITS.maxHeaderSize,
  };
  const app = Fastify({
    logger: false,
    bodyLimit: BODY_LIMIT,
    connectionTimeout: SERVER_LIMITS.idleTimeoutMs,
    keepAliveTimeout: SERVER_LIMITS.keepAliveTimeoutMs,
    requestTimeout: SERVER_LIMITS.requestTimeoutMs,
    // Node takes these only when the server is created (https takes http's options too).
    http: serverOptions,
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
    clientErrorHandler,
    ...opts,
    ...(opts.https ? { https: { ...serverOptions, ...opts.https } } : {}),
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
  // Not a createServer option: set on the server (checked at every new socket).
  app.server.headersTimeout = SERVER_LIMITS.headersTimeoutMs;
  app.server.maxConnections = SERVER_LIMITS.maxConnections;
  // Node answers an `Expect` other than 100-continue with a bare 417 before any route runs; give it
  // the lab's body too (found by the fuzz suite).
  app.server.on('checkExpectation', (_req: IncomingMessage, res: ServerResponse) => {
    const body = JSON.stringify(
      errorBody(new TrustedMsError('EXPECTATION_FAILED', 'only "Expect: 100-continue" is supported')),
    );
    res.writeHead(417, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      connection: 'close',
    });
    res.end(body);
  });
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

/**
 * Requests Node's HTTP parser refuses before fastify sees them (a header section over 16 KiB, a NUL
 * in a header, a malformed method or request line, a request that timed out) are answered here
 * with the lab's body, `{code, message}`; fastify's default answer had no `code` (found by the fuzz
 * suite). The connection is closed after: the parser cannot resynchronise on it.
 */
function clientErrorHandler(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const known =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? new TrustedMsError('HEADERS_TOO_LARGE', 'request headers too large')
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? new TrustedMsError('REQUEST_TIMEOUT', 'request took too long to arrive')
        : new TrustedMsError('INVALID_INPUT', 'malformed HTTP request');
  const status = known.httpStatus;
  const body = JSON.stringify(errorBody(known));
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
        `content-type: application/json; charset=utf-8\r\nconnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
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
  return diskFaultOf(err) ?? new TrustedMsError('INTERNAL', 'internal error');
}
