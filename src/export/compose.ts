import { basename } from 'node:path';
import { PART_PORT } from '../lab/runtimes/docker/docker-runtime.js';
import type { ClusterLab } from './cluster-plan.js';
import { DEFAULT_BASE_IMAGE, imageOf, RUN_AS } from './images.js';
import { partFiles, writableDirsOf } from './part-files.js';
import { partMemory } from './part-memory.js';

/** The host port the gateway is published on, on 127.0.0.1 only. */
export const COMPOSE_GATEWAY_PORT = 8080;

/** The parts of the Compose Specification the export writes. */
export interface ComposeService {
  image: string;
  build: { context: string; args: Record<string, string> };
  command: string[];
  environment: Record<string, string>;
  user: string;
  init: true;
  restart: string;
  read_only: true;
  tmpfs: string[];
  cap_drop: string[];
  security_opt: string[];
  networks: string[];
  ports?: { target: number; host_ip: string; published: string; protocol: 'tcp' }[];
  configs: { source: string; target: string }[];
  secrets?: { source: string; target: string }[];
  volumes?: string[];
  deploy: { replicas: number; resources: { limits: { memory: string }; reservations: { memory: string } } };
}

export interface ComposeFile {
  name: string;
  services: Record<string, ComposeService>;
  networks: Record<string, { internal?: boolean; driver_opts?: Record<string, string> }>;
  volumes?: Record<string, Record<string, never>>;
  configs: Record<string, { file: string }>;
  secrets?: Record<string, { file: string }>;
}

/** A compose secret per file: compose mounts files, not folders of keys as Kubernetes does. */
const composeSecretName = (secret: string, key: string) => `${secret}-${key}`.replace(/[^a-zA-Z0-9_-]/g, '-');

/**
 * The same lab for `docker compose`: the services and the security service on an internal network
 * (no way out), the gateway also on an edge network and published on 127.0.0.1 alone, as a Docker
 * lab is. Images are built from the export's `images/` folders; configs and secrets are files
 * beside the compose file (secrets are put there by the operator, see SECRETS.md).
 */
export function composeFileOf(lab: ClusterLab): ComposeFile {
  const services: Record<string, ComposeService> = {};
  const configs: Record<string, { file: string }> = {};
  const secrets: Record<string, { file: string }> = {};
  const volumes: Record<string, Record<string, never>> = {};
  for (const part of lab.parts) {
    const name = part.config.part;
    const writable = writableDirsOf(lab, part);
    const image = imageOf(part, writable);
    const memory = partMemory(part.config.kind);
    const service: ComposeService = {
      image: image.image,
      build: { context: `./images/${image.folder}`, args: { BASE: DEFAULT_BASE_IMAGE, ...image.args } },
      command: image.command,
      environment: { TMS_PART_CONFIG: part.launch.configFile, NODE_ENV: 'production' },
      user: `${RUN_AS}:${RUN_AS}`,
      init: true,
      restart: 'on-failure:5',
      read_only: true,
      tmpfs: ['/tmp'],
      cap_drop: ['ALL'],
      security_opt: ['no-new-privileges:true'],
      networks: name === 'gateway' ? ['internal', 'edge'] : ['internal'],
      ...(name === 'gateway'
        ? {
            ports: [
              {
                target: PART_PORT,
                host_ip: '127.0.0.1',
                published: String(COMPOSE_GATEWAY_PORT),
                protocol: 'tcp',
              },
            ],
          }
        : {}),
      configs: [],
      deploy: {
        replicas: lab.replicasOf(name),
        resources: {
          limits: { memory: `${memory.limitMiB}M` },
          reservations: { memory: `${memory.requestMiB}M` },
        },
      },
    };
    const partSecrets: { source: string; target: string }[] = [];
    const partVolumes: string[] = [];
    for (const f of partFiles(lab, part)) {
      if (f.from === 'config') {
        configs[`${name}-config`] = { file: `./configs/${basename(f.path)}` };
        service.configs.push({ source: `${name}-config`, target: f.path });
      } else if (f.from === 'secret') {
        const keys = f.key === undefined ? Object.keys(f.secret.keys) : [f.key];
        for (const key of keys) {
          const source = composeSecretName(f.secret.name, key);
          secrets[source] = { file: `./secrets/${f.secret.name}/${key}` };
          partSecrets.push({ source, target: f.key === undefined ? `${f.path}/${key}` : f.path });
        }
      } else {
        const volume = `${name}-${f.volume}`;
        volumes[volume] = {};
        partVolumes.push(`${volume}:${f.path}`);
      }
    }
    if (partSecrets.length > 0) service.secrets = partSecrets;
    if (partVolumes.length > 0) service.volumes = partVolumes;
    services[name] = service;
  }
  return {
    name: 'trusted-ms',
    services,
    networks: {
      internal: { internal: true },
      // As on a Docker lab: a port published on this network binds loopback unless told otherwise.
      edge: { driver_opts: { 'com.docker.network.bridge.host_binding_ipv4': '127.0.0.1' } },
    },
    ...(Object.keys(volumes).length > 0 ? { volumes } : {}),
    configs,
    ...(Object.keys(secrets).length > 0 ? { secrets } : {}),
  };
}
