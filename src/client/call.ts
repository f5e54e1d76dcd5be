import { type Dispatcher, request } from 'undici';
import { requestHeaders } from '../defences/request/client.js';
import { TrustedMsError } from '../errors.js';
import { asEdgeFailure } from '../kernel/edge-client.js';
import type { Session } from './session.js';

export interface CallRequest {
  gatewayUrl: string;
  service: string;
  /** the path inside the service, e.g. `/db/orders/records/ord-1` */
  path: string;
  method?: Dispatcher.HttpMethod;
  body?: string;
  dispatcher?: Dispatcher;
}

export interface CallResult {
  status: number;
  body: unknown;
  durationMs: number;
}

/** The headers a session puts on one request (src/defences/request/client.ts). */
export const authHeaders = requestHeaders;

/** One request through the gateway as a logged-in user: the curl of the lab. */
export async function callService(session: Session, req: CallRequest): Promise<CallResult> {
  const method = req.method ?? (req.body === undefined ? 'GET' : 'POST');
  const path = req.path.startsWith('/') ? req.path : `/${req.path}`;
  const fullPath = `/svc/${req.service}${path}`;
  const t0 = performance.now();
  let res: Dispatcher.ResponseData;
  try {
    res = await request(`${req.gatewayUrl}${fullPath}`, {
      method,
      headers: {
        ...authHeaders(session, method, fullPath, req.body),
        ...(req.body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(req.body === undefined ? {} : { body: req.body }),
      headersTimeout: 15_000,
      bodyTimeout: 15_000,
      ...(req.dispatcher ? { dispatcher: req.dispatcher } : {}),
    });
  } catch (err) {
    const edge = asEdgeFailure(err, req.gatewayUrl);
    if (edge !== err) throw edge;
    throw new TrustedMsError('SERVICE_UNAVAILABLE', `cannot reach the gateway: ${(err as Error).message}`, {
      actions: ['is the lab up? trusted-ms lab status'],
    });
  }
  const text = await res.body.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: res.statusCode, body, durationMs: performance.now() - t0 };
}
