import { Agent, type Pool } from 'undici';
import { enforcesAttestation } from '../../defences/attestation.js';
import {
  type AttestationEntry,
  AttestationTable,
  parseAttestationEntries,
} from '../../defences/attestation-table.js';
import { edgeFor } from '../../defences/edge.js';
import { feedsFor } from '../../defences/feeds.js';
import { metersFor } from '../../defences/limits.js';
import { linksFor } from '../../defences/links.js';
import { ticketKindOf } from '../../defences/presets.js';
import type { PasswordPrincipal } from '../../defences/request/gateway-basic.js';
import { readPartConfig, readSecret, securityUrlsOf } from '../../kernel/part-config.js';
import { LabClock } from '../../protocol/lab-clock.js';
import { DEFAULT_PROOF_WINDOW_MS, ProofVerifier } from '../../protocol/proof.js';
import { orFailClosed } from '../fail-closed.js';
import { RenewingDispatcher } from '../renewing-dispatcher.js';
import { RevocationFeed } from '../revocation-feed.js';
import { SecurityClient } from '../security-client.js';
import { buildGateway } from './app.js';
import { gatewayStrategies } from './assemble.js';
import { loginReplicasUpstream } from './login-replicas.js';
import { ProofsAheadLog } from './proofs-ahead.js';
import { createPool, poolUpstream, type Upstream } from './upstream.js';

const POLL_MS = 2000;

const config = readPartConfig('gateway');
const { defences } = config;
const links = await linksFor(defences.links, config, (line) => console.log(`gateway: ${line}`));
const edge = await edgeFor(defences.edge, config.edgeIdentityDir, (line) =>
  console.log(`gateway edge: ${line}`),
);
// With certificates (links:mtls) the gateway holds no lab token: it reaches the security service's
// control plane with its identity; otherwise the token, and its own credential for the feed, whose
// confirmations count only under it (src/defences/part-credentials.ts).
const labToken = config.labTokenFile ? readSecret(config.labTokenFile) : undefined;
const feedCredential = config.partCredentialFile ? readSecret(config.partCredentialFile) : labToken;
const controlConnect = config.controlPlaneUrl ? links.connectControlPlane() : undefined;
// Every security service replica (one unless `lab up --security-replicas`), its control plane
// with links:mtls.
const securityUrls = securityUrlsOf(config);
// Rebuilt with the renewed certificate on each renewal (like the services' pools below).
const controlAgent = controlConnect
  ? new RenewingDispatcher(() => new Agent({ connect: links.connectControlPlane() ?? {} }))
  : undefined;
const security = new SecurityClient(securityUrls, labToken, controlAgent);

// feeds:signed: the table only from a verified, fresh envelope (src/defences/feeds.ts).
const fetchAttestations = async (): Promise<AttestationEntry[]> =>
  feeds.open('services', await security.call<unknown>('GET', '/v1/services'), (body) =>
    parseAttestationEntries(
      (body as { services?: unknown[] } | null)?.services?.map((s) => ({
        name: (s as AttestationEntry).name,
        state: (s as AttestationEntry).state,
      })),
    ),
  );

const poolFor = (name: string, url: string): Pool => {
  const connect = links.connect(name);
  return createPool(url, connect === undefined ? {} : { connect });
};
const authPoolNow = (url: string): Pool => {
  const connect = controlConnect ? links.connectControlPlane() : undefined;
  return createPool(url, connect === undefined ? {} : { connect });
};
/** each replica's auth routes, relayed (replaced when the identity is renewed) */
const authPools = new Map(securityUrls.map((url) => [url, authPoolNow(url)]));
const authUpstreams = new Map(
  securityUrls.map((url) => [url, poolUpstream(() => authPools.get(url) as Pool, 'the security service')]),
);
/** service → the pool new requests to it go through (replaced when the identity is renewed) */
const pools = new Map(Object.entries(config.services).map(([name, url]) => [name, poolFor(name, url)]));
const upstreams: Record<string, Upstream> = {};
for (const name of pools.keys()) upstreams[name] = poolUpstream(() => pools.get(name) as Pool, name);
// New connections present the renewed certificate; an old pool finishes the requests it has in
// flight (close() waits for them) and goes.
links.onRenewed(() => {
  controlAgent?.renew();
  for (const url of securityUrls) {
    const oldAuth = authPools.get(url);
    authPools.set(url, authPoolNow(url));
    void oldAuth?.close().catch(() => undefined);
  }
  for (const [name, url] of Object.entries(config.services)) {
    const old = pools.get(name);
    pools.set(name, poolFor(name, url));
    void old?.close().catch(() => undefined);
  }
});

const attestation = new AttestationTable();
// The security service's clock, followed by the feed (docs/faults.md, "Clocks").
const clock = new LabClock();
links.judgeEndsAlsoOn(() => clock.now());
// What the forwarding acts on: the revocation list, and the attestation table when it is enforced.
const feeds = feedsFor(
  defences.feeds,
  config,
  () => clock.now(),
  enforcesAttestation(defences.attestation) ? ['revocations', 'services'] : ['revocations'],
  (line) => console.log(`gateway: ${line}`),
);
const revocations = new RevocationFeed(securityUrls, {
  part: 'gateway',
  feeds,
  ...(feedCredential ? { token: feedCredential } : {}),
  ...(controlAgent ? { dispatcher: controlAgent } : {}),
  log: (line) => console.log(line),
  clock,
});
await orFailClosed('gateway', revocations.start());
const ticketKind = ticketKindOf(defences.login);
const verifier =
  ticketKind === undefined
    ? undefined
    : await orFailClosed('gateway', security.ticketVerifier(ticketKind, clock, feeds));
/**
 * Proofs made before this instance started may have been accepted by the one before it. Proofs
 * are stamped on the clients' wall clocks, so this is the wall clock at start; or the lab clock when
 * it is more than a proof window ahead: the wall clock stepped back, and proofs stamped up to the
 * lab time may have been accepted. A smaller lead is the security service's high-water mark (up to
 * MARK_AHEAD_MS after a quick restart of it): taking it refused every session's next request.
 * Whether a ticket was issued before the start is judged on the lab clock, as its `iat`.
 */
const wallAtStart = Date.now();
const labAtStart = Math.floor(clock.now()) || 0;
const startedAt = labAtStart - wallAtStart > DEFAULT_PROOF_WINDOW_MS ? labAtStart : wallAtStart;
// Proofs an earlier gateway accepted stamped ahead of its clock, so after that start.
const proofsAhead = config.stateDir === undefined ? undefined : new ProofsAheadLog(config.stateDir);
// With no attestation to enforce, the table is not needed: nothing polls the security service for it.
const poll = enforcesAttestation(defences.attestation)
  ? setInterval(() => void attestation.refresh(fetchAttestations), POLL_MS)
  : undefined;
if (poll) await attestation.refresh(fetchAttestations);
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

// A push (links:mtls) only prompts a fetch: one at a time, and one more after it when prompted
// meanwhile, so the last change is always fetched and a flood of prompts is one fetch at a time.
let pushFetch: Promise<void> | undefined;
let fetchAgain = false;
const refreshOnPush = (): Promise<void> => {
  if (pushFetch) {
    fetchAgain = true;
    return pushFetch;
  }
  pushFetch = (async () => {
    do {
      fetchAgain = false;
      await attestation.refresh(fetchAttestations).catch(() => undefined);
    } while (fetchAgain);
  })().finally(() => {
    pushFetch = undefined;
  });
  return pushFetch;
};

const app = buildGateway({
  ...gatewayStrategies(defences, {
    attestation,
    revocations: revocations.view,
    ...(verifier ? { verifier } : {}),
    sealKey: Buffer.from(readSecret(config.sealKeyFile), 'base64url'),
    proofs: new ProofVerifier({
      notBeforeMs: startedAt,
      ticketsIssuedFromMs: labAtStart,
      ...(proofsAhead
        ? { aheadOfStart: proofsAhead.earlier(), recordAhead: (jti, t) => proofsAhead.record(jti, t) }
        : {}),
    }),
    checkPassword: async (user: string, password: string) =>
      security.call<PasswordPrincipal>('POST', '/v1/internal/password', { user, password }),
    auth: loginReplicasUpstream(securityUrls, (url) => authUpstreams.get(url) as Upstream),
    recheckAttestation,
    meters: metersFor(config.rateLimit),
  }),
  edge,
  upstreams,
  attestation,
  revocations: revocations.view,
  feeds,
  ...(labToken ? { labToken } : {}),
  ...(controlAgent ? { refreshAttestation: refreshOnPush, relayVouchedByCertificate: true } : {}),
  // A pushed table is not signed: with signed feeds a push only prompts a verified fetch.
  ...(feeds.kind === 'signed' ? { refreshAttestation: refreshOnPush, pushPromptsOnly: true } : {}),
});

await app.listen({ host: config.host, port: config.port });
console.log(
  `gateway (${config.posture}) listening on ${edge.serverTls ? 'https' : 'http'}://${config.host}:${config.port}, ${pools.size} services, ${Object.entries(
    defences,
  )
    .map(([k, v]) => `${k}:${v}`)
    .join(' ')}`,
);

const stop = (): void => {
  if (poll) clearInterval(poll);
  feeds.close();
  void revocations.stop();
  setTimeout(() => process.exit(0), 1500).unref();
  links.close();
  edge.close();
  void Promise.allSettled([
    app.close(),
    ...[...pools.values()].map((p) => p.destroy()),
    ...[...authPools.values()].map((p) => p.destroy()),
    controlAgent?.stop(),
  ]).finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
