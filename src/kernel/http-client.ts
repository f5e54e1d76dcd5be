import type { Dispatcher } from 'undici';
import { TrustedMsError } from '../errors.js';
import { fromErrorBody } from './error-body.js';

export interface JsonRequest {
  method?: Dispatcher.HttpMethod;
  body?: unknown;
  token?: string;
  headers?: Record<string, string>;
  dispatcher?: Dispatcher;
  timeoutMs?: number;
}

/**
 * One JSON request to a part of the lab (undici, never fetch: see ENVIRONMENT.md). A refusal
 * comes back as the TrustedMsError whose code the part sent; an unreachable part as
 * SERVICE_UNAVAILABLE.
 */
export async function jsonRequest<T>(url: string, opts: JsonRequest = {}): Promise<T> {
  const timeout = opts.timeoutMs ?? 10_000;
  // Loaded here, not at the top: undici costs ~0.1-0.2 s of a CLI command's start (--help, lists).
  const { request } = await import('undici');
  let res: Dispatcher.ResponseData;
  try {
    res = await request(url, {
      method: opts.method ?? (opts.body === undefined ? 'GET' : 'POST'),
      headers: {
        ...(opts.body === undefined ? {} : { 'content-type': 'application/json' }),
        ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
        ...opts.headers,
      },
      ...(opts.body === undefined ? {} : { body: JSON.stringify(opts.body) }),
      headersTimeout: timeout,
      bodyTimeout: timeout,
      ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}),
    });
  } catch (err) {
    throw new TrustedMsError(
      'SERVICE_UNAVAILABLE',
      `cannot reach ${new URL(url).origin}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  const text = await res.body.text();
  let body: unknown;
  try {
    body = text === '' ? undefined : JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (res.statusCode >= 400) throw fromErrorBody(res.statusCode, body);
  return body as T;
}
