import type { IncomingHttpHeaders } from 'node:http';
import { Pool } from 'undici';
import { TrustedMsError } from '../../errors.js';

/** One service behind the gateway, as the gateway sees it: send a request, get the whole answer. */
export interface Upstream {
  request(opts: UpstreamRequest): Promise<UpstreamResponse>;
}

export interface UpstreamRequest {
  method: string;
  /** Path with query, as the service should see it (without `/svc/<name>`). */
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
}

export interface UpstreamResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** Largest answer relayed; a bigger one is a 502, not an unbounded buffer. */
export const MAX_UPSTREAM_BODY = 8 * 1024 * 1024;

export type PoolOptions = ConstructorParameters<typeof Pool>[1];

/** Pool settings per upstream (ENVIRONMENT.md: one undici Pool per upstream, with timeouts). */
export const DEFAULT_POOL_OPTIONS = {
  connections: 64,
  keepAliveTimeout: 30_000,
  connectTimeout: 2_000,
  headersTimeout: 10_000,
  bodyTimeout: 10_000,
} as const satisfies PoolOptions;

/**
 * An Upstream over an undici Pool. A refused connection (nothing listens: the service is dead or
 * restarting), or on Docker a name that no longer resolves (the engine's DNS drops a stopped
 * container), is SERVICE_DOWN, a 503 a client may retry; every other failure (reset, timeout, too
 * big) is SERVICE_UNAVAILABLE. `pool` may be a function giving the pool of the moment (a pool
 * replaced when the gateway's identity is renewed).
 */
export function poolUpstream(pool: Pool | (() => Pool), name = 'the service'): Upstream {
  const current = typeof pool === 'function' ? pool : () => pool;
  const send = (opts: Parameters<Pool['request']>[0]) => current().request(opts);
  return {
    async request({ method, path, headers, body }) {
      try {
        const opts = {
          method: method as 'GET',
          path,
          headers,
          ...(body !== undefined && body.length > 0 ? { body } : {}),
        };
        // A kept-alive connection to a service that just died can fail before any answer (the pool
        // had not yet seen it close); an idempotent request is sent once more, on a new connection,
        // which then says whether anything listens.
        const res = await send(opts).catch((err: unknown) => {
          if (IDEMPOTENT.has(method) && isClosedBeforeAnswer(err)) return send(opts);
          throw err;
        });
        const chunks: Buffer[] = [];
        let size = 0;
        for await (const chunk of res.body as AsyncIterable<Buffer>) {
          size += chunk.length;
          if (size > MAX_UPSTREAM_BODY) {
            res.body.destroy();
            throw new Error('upstream answer too large');
          }
          chunks.push(chunk);
        }
        return {
          status: res.statusCode,
          headers: res.headers,
          body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size),
        };
      } catch (cause) {
        if (refusal(cause) !== undefined) {
          throw new TrustedMsError('SERVICE_DOWN', `${name} is not running (${refusal(cause)})`, { cause });
        }
        throw new TrustedMsError('SERVICE_UNAVAILABLE', `${name} did not answer`, { cause });
      }
    },
  };
}

/** A Pool per base URL with the default settings, overridable (e.g. `connect` for mTLS). */
export function createPool(baseUrl: string, opts: PoolOptions = {}): Pool {
  return new Pool(baseUrl, { ...DEFAULT_POOL_OPTIONS, ...opts });
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS']);

function isClosedBeforeAnswer(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  return code === 'UND_ERR_SOCKET' || code === 'ECONNRESET' || code === 'EPIPE';
}

const DOWN_CODES: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'its name does not resolve',
};

/** What says the service is not there, found down the chain of causes, or undefined. */
function refusal(err: unknown): string | undefined {
  for (
    let e = err as { code?: unknown; cause?: unknown } | undefined, i = 0;
    e && i < 4;
    e = e.cause as typeof e, i++
  ) {
    if (typeof e.code === 'string' && Object.hasOwn(DOWN_CODES, e.code)) return DOWN_CODES[e.code];
  }
  return undefined;
}
