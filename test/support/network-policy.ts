/**
 * NetworkPolicy semantics for traffic between pods of one namespace, as the API defines them: a
 * pod selected by no policy of a direction allows everything in it; a pod selected by some allows
 * only what one of their rules matches (a rule with no `from`/`to` matches any peer; with no
 * `ports`, any port). A connection needs the sender's egress and the receiver's ingress.
 */
type Labels = Record<string, string>;
interface Peer {
  podSelector?: { matchLabels?: Labels };
  namespaceSelector?: unknown;
  ipBlock?: unknown;
}
interface Rule {
  from?: Peer[];
  to?: Peer[];
  ports?: { port?: number | string; protocol?: string }[];
}
export interface Policy {
  kind: string;
  spec: { podSelector: { matchLabels?: Labels }; policyTypes: string[]; ingress?: Rule[]; egress?: Rule[] };
}

const selects = (selector: { matchLabels?: Labels }, pod: Labels) =>
  Object.entries(selector.matchLabels ?? {}).every(([k, v]) => pod[k] === v);

// A peer with a namespaceSelector or an ipBlock names pods elsewhere (kube-dns), not this namespace's.
const peerMatches = (peer: Peer, pod: Labels) =>
  peer.namespaceSelector === undefined && peer.ipBlock === undefined && selects(peer.podSelector ?? {}, pod);

function allowedOneWay(
  policies: Policy[],
  direction: 'Ingress' | 'Egress',
  self: Labels,
  other: Labels,
  port: number,
): boolean {
  const applying = policies.filter(
    (p) => p.spec.policyTypes.includes(direction) && selects(p.spec.podSelector, self),
  );
  if (applying.length === 0) return true;
  return applying.some((p) =>
    (direction === 'Ingress' ? p.spec.ingress : p.spec.egress)?.some((rule) => {
      const peers = direction === 'Ingress' ? rule.from : rule.to;
      const peerOk = peers === undefined || peers.some((peer) => peerMatches(peer, other));
      const portOk =
        rule.ports === undefined || rule.ports.some((p) => p.port === undefined || p.port === port);
      return peerOk && portOk;
    }),
  );
}

/** Whether a pod labelled `from` may open a TCP connection to `port` of a pod labelled `to`. */
export function allows(policies: Policy[], from: Labels, to: Labels, port: number): boolean {
  return (
    allowedOneWay(policies, 'Egress', from, to, port) && allowedOneWay(policies, 'Ingress', to, from, port)
  );
}

/** Whether the receiver's policies let in a connection from a source outside the namespace. */
export function admitsFromOutside(policies: Policy[], to: Labels, port: number): boolean {
  return allowedOneWay(policies, 'Ingress', to, { outside: 'yes' }, port);
}
