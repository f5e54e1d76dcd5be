import { readFileSync } from 'node:fs';
import type { Pool } from 'undici';
import { TrustedMsError } from '../../errors.js';
import { readPartConfig, readSecret } from '../../lab/part-config.js';
import { readIdentity } from '../../pki/identity-files.js';
import { clientTlsConnector } from '../../pki/mtls.js';
import { ProofVerifier } from '../../protocol/proof.js';
import type { TicketVerifier } from '../../protocol/ticket.js';
import { KeyedConcurrency, RateLimiter } from '../rate-limit.js';
import { RevocationFeed } from '../revocation-feed.js';
import { SecurityClient } from '../security-client.js';
import { buildGateway, type Principal } from './app.js';
import { type AttestationEntry, AttestationTable, parseAttestationEntries } from './attestation-table.js';
import { createPool, poolUpstream, type Upstream } from './upstream.js';

const POLL_MS = 2000;
/** Proofs made before this instance started may have been accepted by the one before it. */
const STARTED_AT = Date.now();

const config = readPartConfig('gateway');
const labToken = readSecret(config.labTokenFile);
const security = new SecurityClient(config.securityUrl, labToken);

const fetchAttestations = async (): Promise<AttestationEntry[]> =>
  parseAttestationEntries(
    (await security.call<{ services?: unknown[] }>('GET', '/v1/services')).services?.map((s) => ({
      name: (s as AttestationEntry).name,
      state: (s as AttestationEntry).state,
    })),
  );

const trusted = config.posture === 'trusted';
let tls: { identity: Awaited<ReturnType<typeof readIdentity>>; caPem: string } | undefined;
if (trusted) {
  if (!config.identityDir || !config.caFile) {
    throw new TrustedMsError('INVALID_INPUT', 'a trusted gateway needs identityDir and caFile');
  }
  tls = { identity: await readIdentity(config.identityDir), caPem: readFileSync(config.caFile, 'utf8') };
}
const pools: Pool[] = [];
const upstreams: Record<string, Upstream> = {};
for (const [name, url] of Object.entries(config.services)) {
  const pool = createPool(
    url,
    tls === undefined ? {} : { connect: clientTlsConnector(tls.identity, tls.caPem, name) },
  );
  pools.push(pool);
  upstreams[name] = poolUpstream(pool, name);
}

const attestation = new AttestationTable();
const revocations = new RevocationFeed(config.securityUrl, {
  part: 'gateway',
  token: labToken,
  log: (line) => console.log(line),
});
await revocations.start();
let verifier: TicketVerifier | undefined;
if (config.posture !== 'none') {
  verifier = await security.ticketVerifier(config.posture);
  await attestation.refresh(fetchAttestations);
}
const poll =
  config.posture === 'none'
    ? undefined
    : setInterval(() => void attestation.refresh(fetchAttestations), POLL_MS);
poll?.unref();

// At most one recheck at a time and one every RECHECK_MS, however many requests hit an untrusted
// service: a flood at a tampered service cannot turn into a flood at the security service.
const RECHECK_MS = 250;
let recheckInFlight: Promise<void> | undefined;
// Monotonic: on the wall clock, a step back of an hour stopped every re-check for that hour.
let lastRecheck = Number.NEGATIVE_INFINITY;
const recheckAttestation = (): Promise<void> => {
  if (recheckInFlight) return recheckInFlight;
  if (performance.now() - lastRecheck < RECHECK_MS) return Promise.resolve();
  lastRecheck = performance.now();
  recheckInFlight = attestation
    .refresh(fetchAttestations)
    .then(() => undefined)
    .finally(() => {
      recheckInFlight = undefined;
    });
  return recheckInFlight;
};

const { perUser, perClient, burst, userBurst } = config.rateLimit;
const app = buildGateway({
  posture: config.posture,
  upstreams,
  attestation,
  revocations: revocations.view,
  ...(config.posture === 'none' ? {} : { recheckAttestation }),
  labToken,
  ...(config.insecureSkipAttestation === true ? { insecureSkipAttestation: true } : {}),
  ...(verifier
    ? { verifier, auth: poolUpstream(createPool(config.securityUrl), 'the security service') }
    : {}),
  ...(trusted
    ? {
        sealKey: Buffer.from(readSecret(config.sealKeyFile), 'base64url'),
        proofs: new ProofVerifier({ notBeforeMs: STARTED_AT }),
        ...(config.insecureSkipProof === true ? { insecureSkipProof: true } : {}),
        ...(config.insecureNoRateLimit === true
          ? {}
          : {
              rateLimit: {
                perUser: new RateLimiter(perUser, userBurst),
                perClient: new RateLimiter(perClient, burst),
                perUserMaxWaitMs: config.rateLimit.userMaxWaitMs,
              },
              authRateLimit: new RateLimiter(
                config.rateLimit.loginsPerClient,
                config.rateLimit.loginsPerClient * 2,
              ),
              authFailureLimit: new RateLimiter(
                config.rateLimit.loginFailuresPerClient,
                config.rateLimit.loginFailureBurst,
              ),
              authInFlight: new KeyedConcurrency(config.rateLimit.loginsInFlightPerClient, 256),
            }),
      }
    : {}),
  ...(config.posture === 'none'
    ? {
        checkPassword: async (user: string, password: string) =>
          security.call<Principal>('POST', '/v1/internal/password', { user, password }),
      }
    : {}),
});

await app.listen({ host: config.host, port: config.port });
console.log(
  `gateway (${config.posture}) listening on ${config.host}:${config.port}, ${pools.length} services`,
);

const stop = (): void => {
  if (poll) clearInterval(poll);
  void revocations.stop();
  setTimeout(() => process.exit(0), 1500).unref();
  void Promise.allSettled([app.close(), ...pools.map((p) => p.destroy())]).finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
