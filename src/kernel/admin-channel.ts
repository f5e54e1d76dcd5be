import { join } from 'node:path';
import type { Dispatcher } from 'undici';
import { isTrustedMsError, TrustedMsError } from '../errors.js';
import { loadLabCa } from '../pki/ca.js';
import { issueServiceCertificate } from '../pki/identity.js';
import { certificateEndClock, clientTlsConnector } from '../pki/mtls.js';
import { runningLabTime } from '../store/lab-clock-mark.js';
import { type JsonRequest, jsonRequest } from './http-client.js';
import { type LabState, labDir } from './lab-state.js';
import { readSecret } from './part-config.js';
import { ReplicaSet } from './replica-set.js';

/**
 * Where the lab token goes: the security service's admin API, as the CLI and the watchman reach it.
 *
 * With a control-plane listener the host can reach (links:mtls; on Docker published on 127.0.0.1), over mutual
 * TLS there: the server must prove the SPIFFE id `security/security` of this lab before a byte of
 * the request (lab token, password) leaves, and the caller presents an `admin` identity, minted on
 * the host from the lab CA it already holds (`<lab>/ca`). Minting per process rather than storing
 * one at `lab up` means no certificate to renew: the red team had the lab token taken by a plain
 * fake on the plain port from the watchman and from `user add`.
 *
 * Without one (none, paper, plain links), the plain port, as before: whatever answers there gets
 * the token.
 */
export interface AdminChannel {
  /** the admin API's origin */
  readonly url: string;
  readonly tls: boolean;
  call<T>(path: string, opts?: Omit<JsonRequest, 'token' | 'dispatcher'>): Promise<T>;
  /**
   * A read that needs no token (the attestation table), over the same channel: with the control
   * plane, from the proven security service only. The second red team had `lab status` and
   * `service list` show a fake's table (a made-up service marked trusted) read from the plain port.
   */
  read<T>(path: string, opts?: Omit<JsonRequest, 'token' | 'dispatcher'>): Promise<T>;
}

/** An admin identity lasts this long; renewed in-process at half-life (the watchman runs for hours). */
const ADMIN_TTL_SECONDS = 600;
const ADMIN_NAME = 'cli';
const CONNECT_TIMEOUT_MS = 3000;

interface Minted {
  /** the lab home and lab id it was minted for: another home's CA would not verify this one */
  home: string;
  labId: string;
  dispatcher: Dispatcher;
  /** on the monotonic clock (performance.now): a wall clock stepped back would keep it for the step */
  renewAt: number;
}
let minted: Minted | undefined;

export async function adminChannel(home: string, state: LabState): Promise<AdminChannel> {
  const token = readSecret(join(labDir(home), 'lab-token'));
  const controlUrl = state.controlPlaneUrl;
  // With replicas (issue 17): the one that last answered, the next when a call never reached it.
  if (controlUrl === undefined) {
    const replicas = new ReplicaSet(state.securityReplicas?.map((r) => r.url) ?? [state.securityUrl]);
    return {
      url: state.securityUrl,
      tls: false,
      call: (path, opts = {}) =>
        replicas.callSticky((url) => jsonRequest(`${url}${path}`, { ...opts, token })),
      read: (path, opts = {}) => replicas.callSticky((url) => jsonRequest(`${url}${path}`, opts)),
    };
  }
  const dispatcher = await adminDispatcher(home, state.labId);
  const replicas = new ReplicaSet(
    state.securityReplicas?.map((r) => r.controlPlaneUrl ?? controlUrl) ?? [controlUrl],
  );
  return {
    url: controlUrl,
    tls: true,
    call: (path, opts = {}) =>
      forgetOnFailure(
        dispatcher,
        replicas.callSticky((url) => jsonRequest(`${url}${path}`, { ...opts, token, dispatcher })),
      ),
    read: (path, opts = {}) =>
      forgetOnFailure(
        dispatcher,
        replicas.callSticky((url) => jsonRequest(`${url}${path}`, { ...opts, dispatcher })),
      ),
  };
}

/**
 * A call that did not reach the security service, or whose identity it refused, drops the identity
 * it went with, so the next call mints a new one. Minted during a forward step of the wall clock
 * (the red team's 3 s at +2 h), the security service refused it as not yet valid once the wall was
 * right again, and the watchman kept it for its whole renewal period, failing every attestation
 * round and identity renewal until every part's certificate ran out (a trusted lab dead 5 minutes
 * after a 3 s blip). On a kept-alive connection the refusal is an answer (403
 * PEER_CERTIFICATE_INVALID, its end judged per request), not a failed handshake: the fifth red team
 * had the same lab locked out 4 minutes by one minted during a step back. Not retried here: a
 * write that may have been delivered is not sent twice.
 */
const DROPS_IDENTITY = new Set(['SERVICE_UNAVAILABLE', 'PEER_CERTIFICATE_INVALID']);

async function forgetOnFailure<T>(dispatcher: Dispatcher, call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (err) {
    if (isTrustedMsError(err) && DROPS_IDENTITY.has(err.code) && minted?.dispatcher === dispatcher) {
      minted = undefined;
      void dispatcher.close().catch(() => undefined);
    }
    throw err;
  }
}

async function adminDispatcher(home: string, labId: string): Promise<Dispatcher> {
  if (minted?.home === home && minted.labId === labId && performance.now() < minted.renewAt)
    return minted.dispatcher;
  const ca = await loadLabCa(join(labDir(home), 'ca'));
  // Dated on the running lab's time, as the identities the security service issues: on this
  // process's wall, one minted during a step back of an hour had ended (on the corrected wall and on
  // the lab clock) as soon as the step was over (the fifth clock red team, K and N).
  const labNow = runningLabTime(home, labId);
  const identity = await issueServiceCertificate(ca, {
    name: ADMIN_NAME,
    kind: 'admin',
    ttlSeconds: ADMIN_TTL_SECONDS,
    now: () => new Date(labNow()),
  });
  // Loaded here, not at the top: undici costs a CLI command's start (see http-client.ts).
  const { Agent } = await import('undici');
  const dispatcher = new Agent({
    // A stopped (SIGSTOP) security service accepts the connection and never answers the handshake:
    // undici's 10 s default would hold each of storeWriter's health probes that long.
    connect: {
      ...clientTlsConnector(identity, ca.certPem, 'security', 'security', certificateEndClock(labNow)),
      timeout: CONNECT_TIMEOUT_MS,
    },
  });
  const previous = minted?.dispatcher;
  minted = { home, labId, dispatcher, renewAt: performance.now() + (ADMIN_TTL_SECONDS * 1000) / 2 };
  // A request still under way on the old one finishes; no new one starts there.
  void previous?.close().catch(() => undefined);
  return dispatcher;
}

type FieldType = 'string' | 'boolean' | 'number' | 'object' | 'array';

/**
 * The admin API's answer, checked for the fields the CLI goes on to print or use: anything else
 * (a fake that answers `{"ok":true}`) is SERVICE_UNAVAILABLE, never reported as done (the red team
 * had `user add` print "Added undefined with role undefined", exit 0).
 */
export function requireAnswer<T>(body: unknown, fields: Record<string, FieldType>, what: string): T {
  const record = typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : undefined;
  const wrong = Object.entries(fields).filter(([key, type]) => {
    const value = record?.[key];
    if (type === 'array') return !Array.isArray(value);
    if (type === 'object') return typeof value !== 'object' || value === null;
    return typeof value !== type;
  });
  if (record !== undefined && wrong.length === 0) return body as T;
  throw new TrustedMsError(
    'SERVICE_UNAVAILABLE',
    `the security service's answer to ${what} is not one (${wrong.map(([k, t]) => `${k}: ${t}`).join(', ')} expected): not taken as done`,
    { actions: ['check `trusted-ms lab status` (an impostor on its port is reported there)'] },
  );
}
