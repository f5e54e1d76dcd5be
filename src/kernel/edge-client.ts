import { readFileSync } from 'node:fs';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import type { Dispatcher } from 'undici';
import { errnoCode, isTrustedMsError, TrustedMsError } from '../errors.js';
import { certificateEndClock } from '../pki/mtls.js';
import { runningLabTime } from '../store/lab-clock-mark.js';
import { type JsonRequest, jsonRequest } from './http-client.js';
import type { LabState } from './lab-state.js';
import { isTlsFailure } from './tls-failure.js';

/**
 * What a client of the gateway needs to know to reach its edge (edge:tls: HTTPS, and the CA to check
 * it with), and, when this client can read it, the running lab's time (`withLabTime`).
 */
export type EdgeView = Pick<LabState, 'gatewayUrl' | 'caFile'> & {
  /**
   * The running lab's time (ms; `runningLabTime`): the gateway certificate's end is judged on the
   * later of it and the wall clock, as the parts' own mTLS clients judge a server's
   * (`certificateEndClock`). Without it, on the wall alone (OpenSSL's check).
   */
  readonly labTime?: () => number;
};

/**
 * The lab as a client on this host sees it, with the running lab's time read from its home: during
 * a step back of the wall clock an ended gateway certificate (an old key kept by whoever held it)
 * would otherwise still pass on the wall (docs/faults.md, I2).
 */
export function withLabTime<T extends Pick<LabState, 'labId'>>(lab: T, home: string): T & EdgeView {
  return { ...lab, labTime: runningLabTime(home, lab.labId) } as T & EdgeView;
}

/**
 * `connect` options for a client of the gateway's HTTPS (edge:tls): the lab CA as the only trust
 * anchor, and the usual host check (the certificate names 127.0.0.1 and localhost). The system's
 * CAs are not trusted here: nobody else issues for a lab's gateway.
 */
export function edgeConnectOptions(
  caPem: string,
  /**
   * the name to expect in the certificate instead of the URL's host: a client container reaches
   * the gateway at its address on the edge network, which no certificate names
   */
  expectedName?: string,
  /**
   * when the certificate's end is judged besides OpenSSL's wall clock (`certificateEndClock` of the
   * lab's time). A resumed session is not judged again: resuming needs the ticket key of the server
   * whose full handshake was judged, which a holder of an old certificate and key has not.
   */
  endClock?: () => Date,
): EdgeConnectOptions {
  if (expectedName === undefined && endClock === undefined) {
    return { ca: caPem, rejectUnauthorized: true, minVersion: 'TLSv1.2' };
  }
  return {
    ca: caPem,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2',
    ...(expectedName === undefined ? {} : { servername: expectedName }),
    checkServerIdentity: (host: string, cert: PeerCertificate) =>
      checkServerIdentity(expectedName ?? host, cert) ?? endedOn(endClock, cert),
  };
}

/** The certificate has ended on `endClock` (OpenSSL's code for it, so it reads as a TLS failure). */
function endedOn(endClock: (() => Date) | undefined, cert: PeerCertificate): Error | undefined {
  if (endClock === undefined || endClock().getTime() <= Date.parse(cert.valid_to)) return undefined;
  return Object.assign(new Error("the gateway's certificate has ended (on the lab clock)"), {
    code: 'CERT_HAS_EXPIRED',
  });
}

export interface EdgeConnectOptions {
  ca: string;
  rejectUnauthorized: true;
  minVersion: 'TLSv1.2';
  servername?: string;
  checkServerIdentity?: (host: string, cert: PeerCertificate) => Error | undefined;
}

/** The connect options of a client of this gateway: the lab CA's for HTTPS, undefined for HTTP. */
export function edgeConnectFor(lab: EdgeView): EdgeConnectOptions | undefined {
  const ca = edgeCaPem(lab);
  return ca === undefined ? undefined : edgeConnectOptions(ca, undefined, edgeEndClock(lab));
}

/** When a client of this gateway judges the end of its certificate: on the lab's time too, when known. */
export function edgeEndClock(lab: EdgeView): (() => Date) | undefined {
  return lab.labTime === undefined ? undefined : certificateEndClock(lab.labTime);
}

/** The lab CA's PEM for a client of this gateway; undefined for an HTTP edge. */
export function edgeCaPem(lab: EdgeView): string | undefined {
  if (!lab.gatewayUrl.startsWith('https:')) return undefined;
  if (lab.caFile === undefined) throw untrusted(lab.gatewayUrl, 'no lab CA file is known for it');
  try {
    return readFileSync(lab.caFile, 'utf8');
  } catch (err) {
    throw untrusted(
      lab.gatewayUrl,
      `the lab CA file ${lab.caFile} cannot be read (${errnoCode(err) ?? 'error'})`,
    );
  }
}

/**
 * Makes every request of this process that names no dispatcher of its own trust the lab CA for
 * the gateway's HTTPS: the CLI's commands (`user login`, `call`, the attack scenarios) reach the
 * gateway through undici's global dispatcher. Nothing to do for an HTTP edge.
 */
export async function trustLabEdge(lab: EdgeView): Promise<void> {
  const ca = edgeCaPem(lab);
  // Once per CA and clock, not per call: a CA is one lab's, and so is the time read with it.
  if (ca === undefined) return;
  const key = `${lab.labTime === undefined ? 'wall' : 'lab'}\n${ca}`;
  if (key === globallyTrusted) return;
  // Loaded here, not at the top: undici costs ~0.1-0.2 s of a CLI command's start (http-client.ts).
  const { Agent, getGlobalDispatcher, setGlobalDispatcher } = await import('undici');
  const before = getGlobalDispatcher();
  setGlobalDispatcher(new Agent({ connect: edgeConnectOptions(ca, undefined, edgeEndClock(lab)) }));
  globallyTrusted = key;
  // The one it replaces finishes what it has in flight and goes (a run of labs, one CA each).
  void before.close().catch(() => undefined);
}

/** The lab CA the global dispatcher trusts now, and on which clock (set by trustLabEdge). */
let globallyTrusted: string | undefined;

/** An agent of its own for a client of the gateway (a load's virtual users), or undefined for HTTP. */
export async function edgeAgent(lab: EdgeView): Promise<Dispatcher | undefined> {
  const ca = edgeCaPem(lab);
  if (ca === undefined) return undefined;
  const { Agent } = await import('undici');
  return new Agent({ connect: edgeConnectOptions(ca, undefined, edgeEndClock(lab)) });
}

/**
 * A request to the gateway that failed in its TLS handshake, as EDGE_CERTIFICATE_UNTRUSTED: the
 * server did not prove to be the lab's gateway (a certificate from another CA, for another name,
 * or none: plain HTTP), or this client was not given the lab CA. Anything else comes back as it was.
 */
export function asEdgeFailure(err: unknown, gatewayUrl: string): unknown {
  // An answer of the gateway's (a refusal it sent, whatever its code) is not a handshake that failed.
  if (isTrustedMsError(err) && err.code !== 'SERVICE_UNAVAILABLE') return err;
  if (!isTlsFailure(err)) return err;
  const reason = tlsReason(err);
  return untrusted(gatewayUrl, reason, err);
}

/** A JSON request to the gateway (`path` on `gatewayUrl`), its TLS failures as EDGE_CERTIFICATE_UNTRUSTED. */
export async function gatewayRequest<T>(
  gatewayUrl: string,
  path: string,
  opts: JsonRequest = {},
): Promise<T> {
  try {
    return await jsonRequest<T>(`${gatewayUrl}${path}`, opts);
  } catch (err) {
    throw asEdgeFailure(err, gatewayUrl);
  }
}

function untrusted(gatewayUrl: string, reason: string, cause?: unknown): TrustedMsError {
  return new TrustedMsError(
    'EDGE_CERTIFICATE_UNTRUSTED',
    `the gateway at ${new URL(gatewayUrl).origin} did not prove itself with the lab CA: ${reason}`,
    {
      actions: [
        'check the gateway with the CA file `trusted-ms lab up` printed (`trusted-ms lab status --json`: caFile)',
        `curl --cacert <caFile> ${new URL(gatewayUrl).origin}/healthz`,
      ],
      ...(cause === undefined ? {} : { cause }),
    },
  );
}

function tlsReason(err: unknown): string {
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 4; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && code !== 'SERVICE_UNAVAILABLE') return code;
    e = (e as { cause?: unknown }).cause;
  }
  return 'TLS handshake failed';
}
