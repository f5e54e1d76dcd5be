import type { INamespace } from 'kubernetes-models/v1/Namespace';
import type { ClusterLab } from '../cluster-plan.js';
import { NAMESPACE } from './labels.js';
import { networkPolicies } from './network-policies.js';
import { configMapOf, deploymentOf, disruptionBudgetOf, homeClaimOf, serviceOf } from './workloads.js';

/** A Kubernetes object as written: apiVersion, kind and metadata at least. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata?: { name?: string; namespace?: string };
}

/**
 * Every object of the lab, by the file it is written to, in the order `kubectl apply -f DIR`
 * takes the files (by name): the namespace first, the policies before any pod starts.
 */
export function k8sManifests(lab: ClusterLab): Record<string, K8sObject[]> {
  const namespace: INamespace = {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: {
      name: NAMESPACE,
      labels: {
        'app.kubernetes.io/part-of': 'trusted-ms',
        // The lab's parts run as non-root with no privilege: the namespace refuses pods that do not.
        'pod-security.kubernetes.io/enforce': 'restricted',
      },
    },
  };
  return {
    '00-namespace.yaml': [namespace],
    '10-network-policies.yaml': networkPolicies(lab),
    '20-configs.yaml': [homeClaimOf(lab), ...lab.parts.map(configMapOf)],
    '30-services.yaml': lab.parts.map(serviceOf),
    '40-deployments.yaml': lab.parts.map((p) => deploymentOf(lab, p)),
    '50-disruption-budgets.yaml': lab.parts.map(disruptionBudgetOf),
  };
}
