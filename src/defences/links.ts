import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { TrustedMsError } from '../errors.js';
import type { ServiceIdentity } from '../pki/identity.js';
import { readIdentity } from '../pki/identity-files.js';
import {
  authorizePeer,
  type ClientTlsOptions,
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
  /** the server's TLS options (client certificates required); undefined for plain HTTP */
  readonly serverTls: ServerTlsOptions | undefined;
  /**
   * Before a request is served: the caller's verified identity must satisfy `allowed` (mTLS), or
   * nothing is known of it (plain). Throws PEER_CERTIFICATE_INVALID, or what `allowed` throws.
   */
  authorizeCaller(socket: Socket, allowed: (peer: string, kind: ServiceKind) => boolean): void;
  /** the connect options to reach `peer` (mTLS: present our identity, expect the peer's) */
  connect(peer: string): ClientTlsOptions | undefined;
  /** the connect options to reach the security service's control-plane listener (mTLS only) */
  connectControlPlane(): ClientTlsOptions | undefined;
}

/** The security service's name in its SPIFFE id (`spiffe://trusted-ms/<lab>/security/security`). */
export const SECURITY_SERVICE = 'security';

export const PLAIN_LINKS: Links = Object.freeze({
  kind: 'plain' as const,
  serverTls: undefined,
  authorizeCaller: () => undefined,
  connect: () => undefined,
  connectControlPlane: () => undefined,
});

export class MutualTls implements Links {
  readonly kind = 'mtls' as const;
  readonly serverTls: ServerTlsOptions;

  constructor(
    readonly identity: ServiceIdentity,
    readonly caPem: string,
  ) {
    this.serverTls = serverTlsOptions(identity, caPem);
  }

  authorizeCaller(socket: Socket, allowed: (peer: string, kind: ServiceKind) => boolean): void {
    authorizePeer(socket as TLSSocket, allowed);
  }

  connect(peer: string): ClientTlsOptions {
    return clientTlsConnector(this.identity, this.caPem, peer);
  }

  connectControlPlane(): ClientTlsOptions {
    return clientTlsConnector(this.identity, this.caPem, SECURITY_SERVICE, 'security');
  }
}

/** The links of a part with these defences, from the identity files its config names. */
export async function linksFor(
  choice: Defences['links'],
  files: { identityDir?: string | undefined; caFile?: string | undefined },
): Promise<Links> {
  if (choice === 'plain') return PLAIN_LINKS;
  if (!files.identityDir || !files.caFile) {
    throw new TrustedMsError('INVALID_INPUT', 'mTLS links need identityDir and caFile in the part config');
  }
  return new MutualTls(await readIdentity(files.identityDir), readFileSync(files.caFile, 'utf8'));
}
