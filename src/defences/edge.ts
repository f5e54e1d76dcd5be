import { isIP } from 'node:net';
import type { SecureContextOptions } from 'node:tls';
import { TrustedMsError } from '../errors.js';
import type { ServerNames } from '../pki/identity.js';
import { readIdentity } from '../pki/identity-files.js';
import { IdentityFileWatch } from '../pki/identity-watch.js';
import type { ServiceIdentity } from '../pki/spiffe.js';
import type { Defences } from './presets.js';

/**
 * The `edge` defence: how users reach the gateway. `http` sends every login's password and every
 * ticket across that link in the clear, to whoever sits on it (mitm.edge-eavesdrop); `tls` serves
 * HTTPS with the gateway's certificate from the lab CA, which every client of the lab checks
 * against the CA file `lab up` names (src/client/edge-trust.ts). Only the server proves who it is:
 * users have no lab certificates, they prove themselves with the login.
 */
export interface EdgeServer {
  readonly kind: Defences['edge'];
  /** the HTTPS server's options, as of now; undefined for plain HTTP */
  readonly serverTls: EdgeTlsOptions | undefined;
  /** `listener` runs after the certificate was renewed (new handshakes take `serverTls`); returns what stops it */
  onRenewed(listener: () => void): () => void;
  close(): void;
}

export type EdgeTlsOptions = SecureContextOptions & { minVersion: 'TLSv1.2' };

/**
 * Where users reach the gateway's published port, so where its certificate must be valid: curl,
 * browsers and node check the address or name in the URL against the SAN.
 */
export const EDGE_SERVER_NAMES: ServerNames = Object.freeze({ dns: ['localhost'], ip: ['127.0.0.1'] });

/**
 * The names the gateway's certificate carries besides its own, with these defences: the edge's,
 * and the host of `networkUrl`, where the lab's own parts reach it (its container's name on Docker).
 */
export function gatewayServerNames(
  choice: Defences['edge'] | undefined,
  networkUrl?: string,
): ServerNames | undefined {
  if (choice !== 'tls') return undefined;
  const host = networkUrl === undefined ? undefined : new URL(networkUrl).hostname;
  const extra =
    host !== undefined && isIP(host) === 0 && !EDGE_SERVER_NAMES.dns?.includes(host) ? [host] : [];
  return { dns: [...(EDGE_SERVER_NAMES.dns ?? []), ...extra], ip: [...(EDGE_SERVER_NAMES.ip ?? [])] };
}

export const HTTP_EDGE: EdgeServer = Object.freeze({
  kind: 'http' as const,
  serverTls: undefined,
  onRenewed: () => () => undefined,
  close: () => undefined,
});

/**
 * HTTPS at the edge with the gateway's identity (the same certificate its mutual TLS presents,
 * with the edge's names in it), followed on disk like every identity: a renewal by the watchman
 * serves new handshakes without a restart. TLS 1.2 is accepted here, unlike between the parts:
 * the clients are whatever users run (curl, browsers), not only this lab's code.
 */
export class EdgeTls implements EdgeServer {
  readonly kind = 'tls' as const;
  #serverTls: EdgeTlsOptions;
  readonly #listeners = new Set<() => void>();
  #watch: IdentityFileWatch | undefined;

  constructor(identity: ServiceIdentity) {
    this.#serverTls = edgeTlsOptions(identity);
  }

  get serverTls(): EdgeTlsOptions {
    return this.#serverTls;
  }

  renew(identity: ServiceIdentity): void {
    this.#serverTls = edgeTlsOptions(identity);
    for (const listener of this.#listeners) listener();
  }

  onRenewed(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  follow(dir: string, current: ServiceIdentity, log?: (line: string) => void): void {
    this.#watch?.stop();
    this.#watch = new IdentityFileWatch(dir, current, (identity) => this.renew(identity), {
      ...(log ? { log } : {}),
    });
  }

  close(): void {
    this.#watch?.stop();
    this.#watch = undefined;
  }
}

function edgeTlsOptions(identity: ServiceIdentity): EdgeTlsOptions {
  return { cert: identity.certPem, key: identity.keyPem, minVersion: 'TLSv1.2' };
}

/** The gateway's edge with these defences, from the identity folder its config names. */
export async function edgeFor(
  choice: Defences['edge'] | undefined,
  identityDir: string | undefined,
  log?: (line: string) => void,
): Promise<EdgeServer> {
  // A lab state or part config from before the edge was a defence names none: plain HTTP, as then.
  if (choice !== 'tls') return HTTP_EDGE;
  if (!identityDir) {
    throw new TrustedMsError('INVALID_INPUT', 'edge:tls needs the gateway identity folder in its config');
  }
  const identity = await readIdentity(identityDir);
  const edge = new EdgeTls(identity);
  edge.follow(identityDir, identity, log);
  return edge;
}
