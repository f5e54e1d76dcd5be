import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import type { INetworkPolicyPort } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicyPort';
import { CONTROL_PORT, PART_PORT } from '../../lab/runtimes/docker/docker-runtime.js';
import type { ClusterLab } from '../cluster-plan.js';
import { NAMESPACE, selectorOf } from './labels.js';

type Policy = INetworkPolicy;

/** Who talks to whom in the lab: the topology's call edges, the gateway's and the security service's. */
export interface TrafficEdges {
  /** part → the parts it sends requests to */
  sendsTo: Map<string, string[]>;
}

/**
 * The lab's traffic, from the plan: every service calls the peers its config names (the
 * topology's edges) and the security service; the gateway routes to every service and calls the
 * security service (login relay, feeds); the security service pushes attestation changes to the
 * gateway.
 */
export function trafficOf(lab: ClusterLab): TrafficEdges {
  const sendsTo = new Map<string, string[]>();
  sendsTo.set('security', lab.plan.security.config.gatewayUrl === undefined ? [] : ['gateway']);
  sendsTo.set('gateway', ['security', ...Object.keys(lab.plan.gateway.config.services)]);
  for (const s of lab.plan.services) sendsTo.set(s.config.part, ['security', ...Object.keys(s.config.peers)]);
  return { sendsTo };
}

function policy(name: string, spec: Policy['spec']): Policy {
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name, namespace: NAMESPACE, labels: { 'app.kubernetes.io/part-of': 'trusted-ms' } },
    spec,
  };
}

const portsOf = (part: string, lab: ClusterLab): INetworkPolicyPort[] => [
  { protocol: 'TCP', port: PART_PORT },
  ...(part === 'security' && lab.plan.security.config.controlPort !== undefined
    ? [{ protocol: 'TCP' as const, port: CONTROL_PORT }]
    : []),
];

/**
 * Default deny both ways, DNS for every pod, then for each part exactly the traffic of the lab:
 * its ingress from the parts that send to it (the gateway's from anyone: it is the way in), its
 * egress to the parts it sends to. A connection needs both ends' policies, so a caller the
 * topology does not list is refused at the callee even if its own egress were opened.
 */
export function networkPolicies(lab: ClusterLab): Policy[] {
  const { sendsTo } = trafficOf(lab);
  const receivesFrom = new Map<string, string[]>();
  for (const [from, tos] of sendsTo)
    for (const to of tos) receivesFrom.set(to, [...(receivesFrom.get(to) ?? []), from]);
  const peer = (part: string) => ({ podSelector: { matchLabels: selectorOf(part) } });
  const policies: Policy[] = [
    policy('default-deny', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] }),
    policy('allow-dns', {
      podSelector: {},
      policyTypes: ['Egress'],
      egress: [
        {
          to: [
            {
              namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } },
              podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } },
            },
          ],
          ports: [
            { protocol: 'UDP', port: 53 },
            { protocol: 'TCP', port: 53 },
          ],
        },
      ],
    }),
  ];
  for (const part of lab.parts.map((p) => p.config.part)) {
    const from = receivesFrom.get(part) ?? [];
    const to = sendsTo.get(part) ?? [];
    const ingress =
      part === 'gateway'
        ? // the lab's only way in: anyone may reach its port, as 127.0.0.1 may on a Docker lab
          [{ ports: portsOf(part, lab) }]
        : from.length > 0
          ? [{ from: from.map(peer), ports: portsOf(part, lab) }]
          : [];
    const egress = to.map((t) => ({ to: [peer(t)], ports: portsOf(t, lab) }));
    policies.push(
      policy(`${part}-traffic`, {
        podSelector: { matchLabels: selectorOf(part) },
        policyTypes: ['Ingress', 'Egress'],
        ...(ingress.length > 0 ? { ingress } : {}),
        ...(egress.length > 0 ? { egress } : {}),
      }),
    );
  }
  return policies;
}
