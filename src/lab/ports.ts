import { createServer, type Server } from 'node:net';

/**
 * `count` distinct free ports on 127.0.0.1, found by binding port 0. They are released before
 * the parts bind them, so another program could take one in between: the part then fails its
 * health check and `lab up` names it.
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < count; i++) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve());
      });
      const address = server.address();
      if (address && typeof address === 'object') ports.push(address.port);
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}
