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

/** Rules by edge: `"<caller>-><callee>"` for one edge, `"*"` for every edge without its own entry. */
export type PeerCallRules = Readonly<Record<string, readonly PeerCallRule[]>>;

/** What the sample kit itself asks of a peer: its health (for its database's name) and a read. */
export const DEFAULT_PEER_CALLS: readonly PeerCallRule[] = Object.freeze([
  'GET /healthz',
  'GET /db/:db/records',
]);

export const EVERY_EDGE = '*';

const RULE = /^(GET|POST|PUT|DELETE) (\/[a-z0-9:._/-]{0,127})$/;
const EDGE = /^([a-z][a-z0-9-]{0,30})->([a-z][a-z0-9-]{0,30})$/;

/** One list of `<METHOD> <path>` rules, checked. */
export function parseRuleList(value: unknown, where: string): PeerCallRule[] {
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
 * A topology's `peerCalls`, checked: a list (every edge), or rules by edge (`"*"` and
 * `"<caller>-><callee>"`; `edge` says whether the topology has that edge). `"*"` defaults to the
 * kit's own calls.
 */
export function parsePeerCalls(
  value: unknown,
  where: string,
  edge: (caller: string, callee: string) => boolean,
): PeerCallRules {
  if (Array.isArray(value)) return { [EVERY_EDGE]: parseRuleList(value, where) };
  if (typeof value !== 'object' || value === null) {
    throw new TrustedMsError('INVALID_INPUT', `${where}: peerCalls must be a list of rules or rules by edge`);
  }
  const out: Record<string, PeerCallRule[]> = { [EVERY_EDGE]: [...DEFAULT_PEER_CALLS] };
  for (const [key, rules] of Object.entries(value)) {
    const m = EDGE.exec(key);
    if (key !== EVERY_EDGE && (m === null || !edge(m[1] as string, m[2] as string))) {
      throw new TrustedMsError(
        'INVALID_INPUT',
        `${where}: peerCalls key ${JSON.stringify(key).slice(0, 80)} is neither "*" nor "<caller>-><callee>" of an edge in calls`,
      );
    }
    out[key] = parseRuleList(rules, `${where}, ${key}`);
  }
  return out;
}

/** The rules of one edge: its own entry, else the one for every edge. */
export function rulesForEdge(rules: PeerCallRules, caller: string, callee: string): readonly PeerCallRule[] {
  return rules[`${caller}->${callee}`] ?? rules[EVERY_EDGE] ?? DEFAULT_PEER_CALLS;
}

/** A service's `service.json` `peerCalls`: its callers' rules by caller's name, checked. */
export function parseCallerRules(value: unknown, where: string): Record<string, PeerCallRule[]> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TrustedMsError('INVALID_INPUT', `${where}: peerCalls must map each caller to its rules`);
  }
  return Object.fromEntries(
    Object.entries(value).map(([caller, rules]) => [caller, parseRuleList(rules, where)]),
  );
}

/**
 * One service's side of its edges: the requests each of its callers may make, expanded for its own
 * databases once, so the check on each request is one Set lookup.
 */
export class PeerCallPolicy {
  readonly #allowed: ReadonlySet<string>;

  constructor(
    rulesByCaller: Readonly<Record<string, readonly PeerCallRule[]>>,
    ownDatabases: readonly string[],
  ) {
    const allowed = new Set<string>();
    for (const [caller, rules] of Object.entries(rulesByCaller)) {
      for (const rule of rules) {
        if (!rule.includes(':db')) allowed.add(`${caller} ${rule}`);
        else
          for (const db of ownDatabases)
            allowed.add(`${caller} ${rule.replaceAll(':db', encodeURIComponent(db))}`);
      }
    }
    this.#allowed = allowed;
  }

  /** Throws PEER_CALL_NOT_ALLOWED unless the caller's edge allows `method path` (the path without its query). */
  check(caller: string, method: string, path: string): void {
    if (!this.#allowed.has(`${caller} ${method} ${path}`)) {
      throw new TrustedMsError('PEER_CALL_NOT_ALLOWED', `caller "${caller}" may not ${method} ${path} here`);
    }
  }
}
