import type Dockerode from 'dockerode';
import { LABEL, removeContainer } from '../docker/engine.js';
import { packTar } from '../docker/tar.js';

/** The relay's part label; its label `RELAY_PORTS` maps each service to its port on 127.0.0.1. */
export const RELAY_PART = 'relay';
const RELAY_PORTS = 'trusted-ms.relay-ports';
const PROGRAM_FILE = '/srv/relay.mjs';

/*
 * A TCP relay, byte for byte (TLS passes through untouched): each port it listens on forwards to
 * one service's name on the lab's overlay, resolved at each connection (dnsrr: any replica).
 */
const PROGRAM = `import net from 'node:net';
const map = JSON.parse(process.env.TMS_RELAY_MAP);
for (const [port, target] of Object.entries(map)) {
  const [host, to] = target.split(':');
  net.createServer((client) => {
    const upstream = net.connect(Number(to), host);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.pipe(upstream).pipe(client);
  }).listen(Number(port), '0.0.0.0');
}
console.log('relay listening on ' + Object.keys(map).join(', '));
`;

/**
 * This host has no interface on an overlay network (unlike a bridge, where it sits at the
 * gateway address), so the attack scenarios could not reach a service past the gateway as they do
 * on Docker (PartState.directUrl). The relay is the lab's stand-in for an attacker's foothold on
 * the services' network: one container on the overlay and the edge bridge, publishing one port per
 * service on 127.0.0.1, like `kubectl port-forward`. Nothing of the lab itself uses it.
 */
export async function startRelay(
  docker: Dockerode,
  opts: {
    labId: string;
    posture: string;
    name: string;
    image: string;
    edgeNetwork: string;
    internalNetwork: string;
    /** service name → [its address on the overlay (`host:port`), the host port to publish] */
    targets: Map<string, { target: string; hostPort: number }>;
  },
): Promise<void> {
  const map: Record<string, string> = {};
  const ports: Record<string, number> = {};
  for (const [service, t] of opts.targets) {
    map[String(t.hostPort)] = t.target;
    ports[service] = t.hostPort;
  }
  const exposed = Object.fromEntries(Object.keys(map).map((p) => [`${p}/tcp`, {}]));
  const bindings = Object.fromEntries(
    Object.keys(map).map((p) => [`${p}/tcp`, [{ HostIp: '127.0.0.1', HostPort: p }]]),
  );
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  const container = await docker.createContainer({
    name: opts.name,
    Image: opts.image,
    Cmd: [PROGRAM_FILE],
    Env: [`TMS_RELAY_MAP=${JSON.stringify(map)}`],
    User: `${uid}:${gid}`,
    Labels: {
      [LABEL.lab]: opts.labId,
      [LABEL.part]: RELAY_PART,
      [LABEL.posture]: opts.posture,
      [RELAY_PORTS]: JSON.stringify(ports),
    },
    ExposedPorts: exposed,
    HostConfig: {
      Init: true,
      NetworkMode: opts.edgeNetwork,
      PortBindings: bindings,
      RestartPolicy: { Name: 'on-failure', MaximumRetryCount: 5 },
    },
  });
  try {
    await docker.getNetwork(opts.internalNetwork).connect({ Container: container.id });
    await container.putArchive(
      packTar([{ type: 'data', name: PROGRAM_FILE.slice(1), data: Buffer.from(PROGRAM), mode: 0o644 }]),
      { path: '/' },
    );
    await container.start();
  } catch (err) {
    await removeContainer(docker, container.id, { name: opts.name }).catch(() => undefined);
    throw err;
  }
}

/** The port on 127.0.0.1 where the lab's relay reaches `service`, if it has one. */
export async function relayPortOf(
  docker: Dockerode,
  labId: string,
  service: string,
): Promise<number | undefined> {
  const [relay] = await docker.listContainers({
    all: true,
    filters: { label: [`${LABEL.lab}=${labId}`, `${LABEL.part}=${RELAY_PART}`] },
  });
  const ports = relay?.Labels[RELAY_PORTS];
  if (ports === undefined) return undefined;
  return (JSON.parse(ports) as Record<string, number>)[service];
}
