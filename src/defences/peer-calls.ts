import { TrustedMsError } from '../errors.js';

/**
 * The per-edge peer policy: what a calling service may ask of a peer it calls in the topology. A
 * user's ticket travels with every peer call and the peer accepts it for whatever the user may do,
 * so without this a compromised service could spend any ticket it was handed on any request to its
 * peers, writes included (identity.relayed-ticket). The kit's own peer calls are the `/overview`
 * reads, so that is all an edge allows by default; the gateway is not bound by it.
 *
 * It is enforced by the peer on the caller's verified identity, so it exists only with links:mtls
 * (on plain links nothing says which service calls).
 */

/** `<METHOD> <path>`; `:db` in a path stands for any database the peer owns. */
export type PeerCallRule = string;

/** What the sample kit itself asks of a peer: its health (for its database's name) and a read. */
export const DEFAULT_PEER_CALLS: readonly PeerCallRule[] = Object.freeze([
  'GET /healthz',
  'GET /db/:db/records',
]);

const RULE = /^(GET|POST|PUT|DELETE) (\/[a-z0-9:._/-]{0,127})$/;

/** A topology's `peerCalls`, checked: a list of `<METHOD> <path>` rules. */
export function parsePeerCalls(value: unknown, where: string): PeerCallRule[] {
  if (
    !Array.isArray(value) ||
    value.length > 32 ||
    value.some((r) => typeof r !== 'string' || !RULE.test(r))
  ) {
    throw new TrustedMsError(
      'INVALID_INPUT',
      `${where}: peerCalls must list up to 32 rules "<GET|POST|PUT|DELETE> /path" (":db" for the peer's databases)`,
    );
  }
  return [...value] as PeerCallRule[];
}

/**
 * One service's side of its edges: the requests any of its callers may make, expanded for its own
 * databases once, so the check on each request is one Set lookup.
 */
export class PeerCallPolicy {
  readonly #allowed: ReadonlySet<string>;

  constructor(rules: readonly PeerCallRule[], ownDatabases: readonly string[]) {
    const allowed = new Set<string>();
    for (const rule of rules) {
      if (!rule.includes(':db')) allowed.add(rule);
      else for (const db of ownDatabases) allowed.add(rule.replaceAll(':db', encodeURIComponent(db)));
    }
    this.#allowed = allowed;
  }

  /** Throws PEER_CALL_NOT_ALLOWED unless the edge allows `method path` (the path without its query). */
  check(caller: string, method: string, path: string): void {
    if (!this.#allowed.has(`${method} ${path}`)) {
      throw new TrustedMsError('PEER_CALL_NOT_ALLOWED', `caller "${caller}" may not ${method} ${path} here`);
    }
  }
}
