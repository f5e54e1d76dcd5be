import { join } from 'node:path';
import type { Posture } from '../defences/posture.js';
import { type Ablation, type Defences, defencesFor } from '../defences/presets.js';
import { labTopology, type ServiceDefinition, selectServices } from '../kernel/topology.js';
import { type LabPlan, type PlannedPart, partsToPlace, planLab } from '../lab/plan.js';
import { CONTAINER_APP_DIR, CONTROL_PORT, PART_PORT } from '../lab/runtimes/docker/docker-runtime.js';
import type { PartPlacement, PartPlan } from '../lab/runtimes/runtime.js';

/**
 * Inside every exported container the lab home sits here: the plan's paths (configs, secrets,
 * identities) are made under it, so each one is where a ConfigMap, a Secret or a volume is mounted.
 */
export const CLUSTER_HOME = '/var/lib/trusted-ms';
export const CLUSTER_LAB_DIR = join(CLUSTER_HOME, 'lab');

export interface ClusterLabInput {
  posture: Posture;
  without?: readonly Ablation[];
  /** as `lab up --services`: the first N services and everything they call */
  services: number;
  /** replicas of each sample service */
  replicas: number;
  /** the lab id written into every part's config; random per export unless given */
  labId: string;
}

/** The lab `lab up` would plan for this posture and size, placed on a cluster's service names. */
export interface ClusterLab {
  posture: Posture;
  without: readonly Ablation[];
  defences: Defences;
  services: ServiceDefinition[];
  plan: LabPlan;
  /** the parts exported, in order: security, gateway, then the services */
  parts: PlannedPart[];
  replicasOf(part: string): number;
}

/**
 * On a cluster every part is reached by its Service's name on the Docker runtime's ports: the
 * same addresses a Docker lab gives by container name.
 */
export function clusterPlacements(parts: readonly PartPlan[]): Map<string, PartPlacement> {
  return new Map(
    parts.map((p) => [
      p.name,
      {
        listenHost: '0.0.0.0',
        port: PART_PORT,
        url: `${p.scheme}://${p.name}:${PART_PORT}`,
        ...(p.kind === 'service' ? { appDir: CONTAINER_APP_DIR } : {}),
        ...(p.controlPlane === true
          ? { control: { port: CONTROL_PORT, url: `https://${p.name}:${CONTROL_PORT}` } }
          : {}),
      },
    ]),
  );
}

/**
 * The plan of `lab up` (src/lab/plan.ts) for the cluster. Not exported: the attacker's sink (a
 * tool of `attack simulate`, not of the system) and the watchman (it re-measures and restarts
 * through this host's runtime; on a cluster the kubelet restarts, and nothing re-measures).
 */
export function planClusterLab(input: ClusterLabInput): ClusterLab {
  // Signed feeds need the feed key's public half in every part's config at export time, and the
  // export carries no lab key (the operator makes the secrets from its guide): not exported yet,
  // and said so in the export's defences (`without`), never silently.
  const without = [...(input.without ?? [])];
  if (defencesFor(input.posture, without).feeds === 'signed') without.push('feeds:signed');
  const defences = defencesFor(input.posture, without);
  const services = selectServices(labTopology(), input.services);
  const placements = clusterPlacements(partsToPlace(CLUSTER_LAB_DIR, defences, services));
  const plan = planLab({
    labId: input.labId,
    home: CLUSTER_HOME,
    dir: CLUSTER_LAB_DIR,
    posture: input.posture,
    defences,
    services,
    runtimeKind: 'docker',
    placements,
    secrets: {
      labTokenFile: join(CLUSTER_LAB_DIR, 'lab-token'),
      sinkTokenFile: join(CLUSTER_LAB_DIR, 'sink-token'),
      ticketKeyFile: join(CLUSTER_LAB_DIR, 'ticket-key.pem'),
      sealKeyFile: join(CLUSTER_LAB_DIR, 'seal-key'),
    },
  });
  // One security service and one gateway: the store has one writer (lowdb) and the gateway keeps
  // its replay cache and rate limits in memory, so a second replica of either would split them.
  const replicasOf = (part: string) => (part === 'security' || part === 'gateway' ? 1 : input.replicas);
  return {
    posture: input.posture,
    without,
    defences,
    services,
    plan,
    parts: [plan.security, plan.gateway, ...plan.services],
    replicasOf,
  };
}
