import { attestationGate } from '../../defences/attestation.js';
import type { AttestationTable } from '../../defences/attestation-table.js';
import { AddressAndUserLimits, type LimitMeters, NO_LIMITS } from '../../defences/limits.js';
import type { Defences } from '../../defences/presets.js';
import { BasicAtGateway, type PasswordPrincipal } from '../../defences/request/gateway-basic.js';
import { TicketAtGateway } from '../../defences/request/gateway-ticket.js';
import type { GatewayAuthenticator } from '../../defences/request/types.js';
import { TrustedMsError } from '../../errors.js';
import type { ProofVerifier } from '../../protocol/proof.js';
import type { RevocationView } from '../../protocol/revocation-list.js';
import type { TicketVerifier } from '../../protocol/ticket.js';
import type { GatewayDeps, Upstream } from './app.js';

/** What the gateway's strategies are made from; which are needed depends on the defences. */
export interface GatewayIngredients {
  attestation: AttestationTable;
  revocations?: RevocationView;
  /** request:bearer, request:bound */
  verifier?: TicketVerifier;
  /** request:bound: the lab secret that opens `cnf.sk`, and the proof checker */
  sealKey?: Buffer;
  proofs?: ProofVerifier;
  /** request:basic: the password check behind HTTP basic (the security service) */
  checkPassword?: (user: string, password: string) => Promise<PasswordPrincipal>;
  /** request:basic: how long a good credential is remembered, and how many */
  basicCacheMs?: number;
  basicCacheEntries?: number;
  /** login:paper, login:challenge: the security service the login steps are relayed to */
  auth?: Upstream;
  /** attestation:self, attestation:measured: ask the security service again before refusing */
  recheckAttestation?: () => Promise<void>;
  /** limits:on */
  meters?: LimitMeters;
  now?: () => number;
}

/**
 * The strategies a gateway with these defences runs, each from its own folder of src/defences/:
 * the one place where the gateway's defences are chosen. A defence whose ingredient is missing is
 * a configuration error (INVALID_INPUT), never a silently weaker gateway.
 */
export function gatewayStrategies(
  defences: Defences,
  i: GatewayIngredients,
): Pick<GatewayDeps, 'defences' | 'authenticate' | 'attestationGate' | 'limits' | 'login'> {
  const need = <T>(x: T | undefined, what: string): T => {
    if (x === undefined) throw new TrustedMsError('INVALID_INPUT', `a gateway with ${what} needs it`);
    return x;
  };
  let authenticate: GatewayAuthenticator;
  let basic: BasicAtGateway | undefined;
  if (defences.request === 'basic') {
    basic = new BasicAtGateway({
      checkPassword: need(i.checkPassword, 'request:basic: a password check'),
      ...(i.revocations ? { revocations: i.revocations } : {}),
      ...(i.basicCacheMs === undefined ? {} : { cacheMs: i.basicCacheMs }),
      ...(i.basicCacheEntries === undefined ? {} : { cacheEntries: i.basicCacheEntries }),
      ...(i.now ? { now: i.now } : {}),
    });
    authenticate = basic;
  } else {
    authenticate = new TicketAtGateway({
      verifier: need(i.verifier, `request:${defences.request}: a ticket verifier`),
      ...(i.revocations ? { revocations: i.revocations } : {}),
      ...(defences.request === 'bound'
        ? {
            bound: {
              sealKey: need(i.sealKey, 'request:bound: the seal key'),
              proofs: need(i.proofs, 'request:bound: a proof verifier'),
            },
          }
        : {}),
    });
  }
  const login: GatewayDeps['login'] =
    defences.login === 'basic'
      ? { kind: 'basic', basic: need(basic, 'login:basic: request:basic') }
      : { kind: 'relay', auth: need(i.auth, `login:${defences.login}: the security service`) };
  return {
    defences,
    authenticate,
    attestationGate: attestationGate(defences.attestation, i.attestation, i.recheckAttestation),
    limits:
      defences.limits === 'on'
        ? new AddressAndUserLimits(need(i.meters, 'limits:on: its meters'))
        : NO_LIMITS,
    login,
  };
}
