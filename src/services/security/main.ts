import { createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request } from 'undici';
import { jwkThumbprint } from '../../crypto/thumbprint.js';
import { enforcesAttestation } from '../../defences/attestation.js';
import { readPartConfig, readSecret } from '../../kernel/part-config.js';
import { loadLabCa } from '../../pki/ca.js';
import { homeLabClock } from '../../store/lab-clock-mark.js';
import { openLabStore } from '../../store/open.js';
import { buildSecurityService } from './app.js';
import { ServiceRegistry } from './registry.js';
import { RevocationBook } from './revocations.js';

const config = readPartConfig('security');
// The lab clock (tickets' iat, challenges, revocations' notBefore, audit times), handed to the
// other parts with /v1/keys and the revocation feed; the store's clock too: on two clocks, a
// revocation after a wall clock stepped back would get a notBefore older than the tickets it must refuse.
const now = homeLabClock(config.home);
// Resident: while the lab runs this process is the store's only writer, so it keeps the store in
// memory and the audit chain's head (every write still on disk before it is acknowledged).
const store = openLabStore(config.home, { resident: true, now: () => new Date(now()) });
const registry = new ServiceRegistry(store, config.defences.attestation);
await registry.load();
const revocations = new RevocationBook(store, {
  namesUntrusted: enforcesAttestation(config.defences.attestation) && config.defences.links === 'mtls',
});
await revocations.load();
const privateKey = createPrivateKey(readFileSync(config.ticketKeyFile, 'utf8'));
const labToken = readSecret(config.labTokenFile);

const app = buildSecurityService({
  labId: config.labId,
  defences: config.defences,
  store,
  registry,
  revocations,
  signingKey: { kid: jwkThumbprint(privateKey), privateKey },
  sealKey: Buffer.from(readSecret(config.sealKeyFile), 'base64url'),
  labToken,
  ...(config.caDir ? { ca: await loadLabCa(config.caDir) } : {}),
  ...(config.identityTtlSeconds === undefined ? {} : { identityTtlSeconds: config.identityTtlSeconds }),
  ticketTtlSeconds: config.ticketTtlSeconds,
  challengeTtlSeconds: config.challengeTtlSeconds,
  onAttestation: async (services) => {
    if (!config.gatewayUrl) return;
    // The gateway may not be up yet (it starts last); it polls at start anyway.
    await request(`${config.gatewayUrl}/internal/attestations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${labToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ services: services.map((s) => ({ name: s.name, state: s.state })) }),
      headersTimeout: 2000,
      bodyTimeout: 2000,
    })
      .then((r) => r.body.dump())
      .catch(() => undefined);
  },
});

await app.listen({ host: config.host, port: config.port });
console.log(`security service (${config.posture}) listening on ${config.host}:${config.port}`);

const stop = (): void => {
  void app
    .close()
    .then(() => store.close())
    .finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 1500).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
