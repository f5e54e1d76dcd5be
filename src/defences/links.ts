import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { TrustedMsError } from '../errors.js';
import type { ServiceIdentity } from '../pki/identity.js';
import { readIdentity } from '../pki/identity-files.js';
import { IdentityFileWatch } from '../pki/identity-watch.js';
import {
  authorizePeer,
  type ClientTlsOptions,
  certificateEndClock,
  clientTlsConnector,
  type ServerTlsOptions,
  serverTlsOptions,
} from '../pki/mtls.js';
import type { ServiceKind } from '../pki/spiffe.js';
import type { Defences } from './presets.js';

/**
 * The `links` defence: how the parts reach each other. `plain` is HTTP, where whoever holds a
 * service's address is the service and anyone on the path reads and changes the traffic; `mtls` is
 * TLS 1.3 both ways with identities from the lab CA, so a caller knows which service answers and a
 * service which part calls it (SPIFFE names, src/pki/).
 */
export interface Links {
  readonly kind: Defences['links'];
  /** the server's TLS options (client certificates required), as of now; undefined for plain HTTP */
  readonly serverTls: ServerTlsOptions | undefined;
  /**
   * Before a request is served: the caller's verified identity must satisfy `allowed` (mTLS), or
   * nothing is known of it (plain). Throws PEER_CERTIFICATE_INVALID, or what `allowed` throws.
   */
  authorizeCaller(socket: Socket, allowed: (peer: string, kind: ServiceKind) => boolean): void;
  /** the connect options to reach `peer` (mTLS: present our identity, expect the peer's) */
  connect(peer: string): ClientTlsOptions | undefined;
  /**
   * `listener` runs after the part's identity was renewed: the server takes the new `serverTls`,
   * the clients new connectors (`connect`). Returns what stops it. Never runs on plain links.
   */
  onRenewed(listener: () => void): () => void;
  /** Stops following the identity files. */
  close(): void;
  /** the connect options to reach the security service's control-plane listener (mTLS only) */
  connectControlPlane(): ClientTlsOptions | undefined;
  /**
   * A caller's certificate is refused once it has ended on the later of the wall clock and this
   * one (the part's lab clock), not on the wall alone (certificateEndClock).
   */
  judgeEndsAlsoOn(labNow: () => number): void;
}

/** The security service's name in its SPIFFE id (`spiffe://trusted-ms/<lab>/security/security`). */
export const SECURITY_SERVICE = 'security';

export const PLAIN_LINKS: Links = Object.freeze({
  kind: 'plain' as const,
  serverTls: undefined,
  authorizeCaller: () => undefined,
  connect: () => undefined,
  onRenewed: () => () => undefined,
  close: () => undefined,
  connectControlPlane: () => undefined,
  judgeEndsAlsoOn: () => undefined,
});

export class MutualTls implements Links {
  readonly kind = 'mtls' as const;
  #identity: ServiceIdentity;
  #serverTls: ServerTlsOptions;
  readonly #listeners = new Set<() => void>();
  #watch: IdentityFileWatch | undefined;
  #now: (() => Date) | undefined;

  constructor(
    identity: ServiceIdentity,
    readonly caPem: string,
  ) {
    this.#identity = identity;
    this.#serverTls = serverTlsOptions(identity, caPem);
  }

  get identity(): ServiceIdentity {
    return this.#identity;
  }

  get serverTls(): ServerTlsOptions {
    return this.#serverTls;
  }

  authorizeCaller(socket: Socket, allowed: (peer: string, kind: ServiceKind) => boolean): void {
    authorizePeer(socket as TLSSocket, allowed, this.#now ? { now: this.#now } : {});
  }

  judgeEndsAlsoOn(labNow: () => number): void {
    this.#now = certificateEndClock(labNow);
  }

  connect(peer: string): ClientTlsOptions {
    return clientTlsConnector(this.#identity, this.caPem, peer, undefined, this.#endClock);
  }

  /** The time a peer certificate's end is judged at: the lab clock's too once it is known (read at each check). */
  readonly #endClock = (): Date => (this.#now ?? (() => new Date()))();

  /** A renewed identity (same SPIFFE id): used from now on, and every listener told. */
  renew(identity: ServiceIdentity): void {
    if (identity.spiffeId !== this.#identity.spiffeId) {
      throw new TrustedMsError('INVALID_INPUT', 'a renewed identity must keep its SPIFFE id');
    }
    const serverTls = serverTlsOptions(identity, this.caPem);
    this.#identity = identity;
    this.#serverTls = serverTls;
    for (const listener of this.#listeners) listener();
  }

  onRenewed(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Takes every renewal the watchman writes into `dir` (polled, see identity-watch.ts). */
  follow(dir: string, log?: (line: string) => void): void {
    this.#watch?.stop();
    this.#watch = new IdentityFileWatch(dir, this.#identity, (identity) => this.renew(identity), {
      ...(log ? { log } : {}),
    });
  }

  close(): void {
    this.#watch?.stop();
    this.#watch = undefined;
  }

  connectControlPlane(): ClientTlsOptions {
    return clientTlsConnector(this.identity, this.caPem, SECURITY_SERVICE, 'security', this.#endClock);
  }
}

/**
 * The links of a part with these defences, from the identity files its config names; with mTLS
 * they follow those files, so a renewed identity is used without a restart.
 */
export async function linksFor(
  choice: Defences['links'],
  files: { identityDir?: string | undefined; caFile?: string | undefined },
  log?: (line: string) => void,
): Promise<Links> {
  if (choice === 'plain') return PLAIN_LINKS;
  if (!files.identityDir || !files.caFile) {
    throw new TrustedMsError('INVALID_INPUT', 'mTLS links need identityDir and caFile in the part config');
  }
  const links = new MutualTls(await readIdentity(files.identityDir), readFileSync(files.caFile, 'utf8'));
  links.follow(files.identityDir, log);
  return links;
}
