import { TrustedMsError } from '../../errors.js';
import { PROOF_HEADER, type ProofVerifier } from '../../protocol/proof.js';
import type { RevocationView } from '../../protocol/revocation-list.js';
import { openSessionKey } from '../../protocol/session-key.js';
import type { TicketClaims, TicketVerifier } from '../../protocol/ticket.js';
import { type Authenticated, bearer, type GatewayAuthenticator, type GatewayRequest } from './types.js';

export interface TicketAtGatewayOptions {
  /** checks tickets (and caches them) */
  verifier: TicketVerifier;
  /** revoked users and quarantined services, kept current by the security service's feed */
  revocations?: RevocationView;
  /**
   * `request:bound`: the lab secret that opens a ticket's `cnf.sk`, and the checker of the
   * `tms-proof` header (refuses replays). Without it, `request:bearer`: the ticket alone.
   */
  bound?: { sealKey: Buffer; proofs: ProofVerifier };
}

/**
 * `request:bearer` and `request:bound` at the gateway: the ticket's signature, expiry and audience,
 * its user not revoked since it was issued, and (bound) a fresh proof of possession over the method,
 * path, time, a nonce and the body, keyed by the session key sealed into the ticket. The ticket
 * itself is forwarded: each service checks it again (principal propagation).
 */
export class TicketAtGateway implements GatewayAuthenticator {
  readonly #o: TicketAtGatewayOptions;
  // Opened session keys, next to the verifier's cached claims: they live exactly as long as it does.
  readonly #sessionKeys = new WeakMap<TicketClaims, Buffer>();

  constructor(o: TicketAtGatewayOptions) {
    this.#o = o;
  }

  async authenticate(request: GatewayRequest, onUser?: (user: string) => void): Promise<Authenticated> {
    const authorization = request.headers.authorization;
    const claims = this.#o.verifier.verify(bearer(authorization) ?? '');
    onUser?.(claims.sub);
    if (this.#o.revocations?.ticketRevoked(claims) === true) {
      throw new TrustedMsError('TICKET_REVOKED', 'ticket revoked');
    }
    const bound = this.#o.bound;
    if (bound !== undefined) {
      const proof = request.headers[PROOF_HEADER];
      bound.proofs.verify({
        header: Array.isArray(proof) ? proof.join(', ') : proof,
        sessionKey: this.#sessionKeyOf(claims, bound.sealKey),
        method: request.method,
        path: request.url,
        body: request.body,
        jti: claims.jti,
        ticketIssuedAtMs: claims.iat * 1000,
      });
    }
    return { user: claims.sub, forward: { authorization: authorization as string } };
  }

  #sessionKeyOf(claims: TicketClaims, sealKey: Buffer): Buffer {
    let key = this.#sessionKeys.get(claims);
    if (key === undefined) {
      if (claims.cnf === undefined) throw new TrustedMsError('TICKET_INVALID', 'ticket verification failed');
      key = openSessionKey(sealKey, claims.cnf.sk, claims.jti);
      this.#sessionKeys.set(claims, key);
    }
    return key;
  }
}
