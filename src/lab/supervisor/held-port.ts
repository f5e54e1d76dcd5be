import { connect } from 'node:net';
import type { PartState } from '../../kernel/lab-state.js';

/**
 * Every port a part binds: its own and, for the security service with links:mtls, its
 * control-plane listener's. A squatter on either keeps it from starting (EADDRINUSE): the red team
 * held the control-plane port alone, which the watchman did not look at, and the security service
 * died six times in a row and was given up for good.
 */
export function portsOf(
  part: Pick<PartState, 'kind' | 'port'>,
  controlPlaneUrl: string | undefined,
): number[] {
  if (part.kind !== 'security' || controlPlaneUrl === undefined) return [part.port];
  return [part.port, Number(new URL(controlPlaneUrl).port)];
}

/** The first of `ports` something listens on (127.0.0.1), or undefined when all are free. */
export async function heldPort(ports: number[]): Promise<number | undefined> {
  for (const port of ports) if (await listening(port)) return port;
  return undefined;
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}
