import { basename } from 'node:path';
import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import type { IPodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import type { IPersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import type { IService } from 'kubernetes-models/v1/Service';
import type { IVolume } from 'kubernetes-models/v1/Volume';
import type { IVolumeMount } from 'kubernetes-models/v1/VolumeMount';
import type { PlannedPart } from '../../lab/plan.js';
import { CONTROL_PORT, PART_PORT } from '../../lab/runtimes/docker/docker-runtime.js';
import type { ClusterLab } from '../cluster-plan.js';
import { imageOf, RUN_AS } from '../images.js';
import { partFiles, writableDirsOf } from '../part-files.js';
import { partMemory } from '../part-memory.js';
import { labelsOf, NAMESPACE, selectorOf } from './labels.js';

/** 0440: readable by the pod's group (fsGroup), which is how a non-root part reads a Secret. */
const SECRET_MODE = 0o440;
const HOME_CLAIM = 'security-home';

const metadataOf = (name: string, part: PlannedPart) => ({
  name,
  namespace: NAMESPACE,
  labels: labelsOf(part),
});

export function configMapOf(part: PlannedPart): IConfigMap {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: metadataOf(`${part.config.part}-config`, part),
    // What `lab up` writes into the part's config file: paths and addresses, never a secret.
    data: { [basename(part.launch.configFile)]: `${JSON.stringify(part.config, null, 2)}\n` },
  };
}

/** The security service's store (the lab home) outlives its pod. */
export function homeClaimOf(lab: ClusterLab): IPersistentVolumeClaim {
  return {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: metadataOf(HOME_CLAIM, lab.plan.security),
    spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
  };
}

function volumesOf(lab: ClusterLab, part: PlannedPart): { volumes: IVolume[]; mounts: IVolumeMount[] } {
  const volumes = new Map<string, IVolume>();
  const mounts: IVolumeMount[] = [];
  for (const f of partFiles(lab, part)) {
    if (f.from === 'config') {
      volumes.set('config', { name: 'config', configMap: { name: `${part.config.part}-config` } });
      mounts.push({ name: 'config', mountPath: f.path, subPath: basename(f.path), readOnly: true });
    } else if (f.from === 'secret') {
      volumes.set(f.secret.name, {
        name: f.secret.name,
        secret: { secretName: f.secret.name, defaultMode: SECRET_MODE },
      });
      mounts.push({
        name: f.secret.name,
        mountPath: f.path,
        readOnly: true,
        ...(f.key === undefined ? {} : { subPath: f.key }),
      });
    } else if (f.volume === 'home') {
      volumes.set('home', { name: 'home', persistentVolumeClaim: { claimName: HOME_CLAIM } });
      mounts.push({ name: 'home', mountPath: f.path });
    } else {
      // The gateway's state survives a restart of its container, as on a Docker lab.
      volumes.set('state', { name: 'state', emptyDir: {} });
      mounts.push({ name: 'state', mountPath: f.path });
    }
  }
  // The root filesystem is read-only; Node and its libraries may still want a scratch folder.
  volumes.set('tmp', { name: 'tmp', emptyDir: { medium: 'Memory', sizeLimit: '16Mi' } });
  mounts.push({ name: 'tmp', mountPath: '/tmp' });
  // Parents before children: the home volume first, then the files mounted inside it.
  mounts.sort((a, b) => a.mountPath.localeCompare(b.mountPath));
  return { volumes: [...volumes.values()], mounts };
}

const containerPorts = (part: PlannedPart) => [
  { name: 'api', containerPort: PART_PORT, protocol: 'TCP' as const },
  ...(part.config.kind === 'security' && part.config.controlPort !== undefined
    ? [{ name: 'control', containerPort: CONTROL_PORT, protocol: 'TCP' as const }]
    : []),
];

export function deploymentOf(lab: ClusterLab, part: PlannedPart): IDeployment {
  const name = part.config.part;
  const image = imageOf(part, writableDirsOf(lab, part));
  const memory = partMemory(part.config.kind);
  const { volumes, mounts } = volumesOf(lab, part);
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      ...metadataOf(name, part),
      annotations: { 'trusted-ms/memory-request': memory.source },
    },
    spec: {
      replicas: lab.replicasOf(name),
      selector: { matchLabels: selectorOf(name) },
      // The store's one writer: the old pod goes before the new one opens the same volume.
      ...(part.config.kind === 'security' ? { strategy: { type: 'Recreate' } } : {}),
      template: {
        metadata: { labels: labelsOf(part) },
        spec: {
          // No part talks to the Kubernetes API: no token in the pod to steal.
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          securityContext: {
            runAsNonRoot: true,
            runAsUser: RUN_AS,
            runAsGroup: RUN_AS,
            fsGroup: RUN_AS,
            seccompProfile: { type: 'RuntimeDefault' },
          },
          containers: [
            {
              name,
              image: image.image,
              imagePullPolicy: 'IfNotPresent',
              command: image.command,
              env: [
                { name: 'TMS_PART_CONFIG', value: part.launch.configFile },
                { name: 'NODE_ENV', value: 'production' },
              ],
              ports: containerPorts(part),
              // A TCP check: an HTTP one could not pass the services' mTLS.
              readinessProbe: { tcpSocket: { port: PART_PORT }, periodSeconds: 5 },
              resources: {
                requests: { memory: `${memory.requestMiB}Mi` },
                limits: { memory: `${memory.limitMiB}Mi` },
              },
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                capabilities: { drop: ['ALL'] },
              },
              volumeMounts: mounts,
            },
          ],
          volumes,
        },
      },
    },
  };
}

/** The name other parts reach it by: the host name in every peer URL of the plan. */
export function serviceOf(part: PlannedPart): IService {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: metadataOf(part.config.part, part),
    spec: {
      // ClusterIP only: the way in from outside is the operator's choice (port-forward, an Ingress).
      type: 'ClusterIP',
      selector: selectorOf(part.config.part),
      ports: containerPorts(part).map((p) => ({ name: p.name, port: p.containerPort, targetPort: p.name })),
    },
  };
}

/**
 * One pod at a time may be evicted: a single-replica part (the security service, the gateway)
 * would otherwise block every node drain for good.
 */
export function disruptionBudgetOf(part: PlannedPart): IPodDisruptionBudget {
  return {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: metadataOf(part.config.part, part),
    spec: { maxUnavailable: 1, selector: { matchLabels: selectorOf(part.config.part) } },
  };
}
