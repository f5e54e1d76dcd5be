import { createPrivateKey, createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Server as TlsServer } from 'node:tls';
import { Agent, request } from 'undici';
import { jwkThumbprint } from '../../crypto/thumbprint.js';
import { enforcesAttestation } from '../../defences/attestation.js';
import { SECURITY_SERVICE } from '../../defences/links.js';
import { partsHoldLabToken } from '../../defences/part-credentials.js';
import { edgeConnectOptions } from '../../kernel/edge-client.js';
import { readPartConfig, readSecret } from '../../kernel/part-config.js';
import { type LabCa, loadLabCa } from '../../pki/ca.js';
import { DEFAULT_CERT_TTL_SECONDS, issueServiceCertificate } from '../../pki/identity.js';
import { certificateEndClock, type ServerTlsOptions, serverTlsOptions } from '../../pki/mtls.js';
import { DEFAULT_FEED_MAX_AGE_SECONDS } from '../../protocol/signed-feed.js';
import { loadAuditPrivateKey, readCheckpoints } from '../../store/audit/checkpoint-files.js';
import { AuditCheckpointer } from '../../store/audit/checkpointer.js';
import { homeLabClock } from '../../store/lab-clock-mark.js';
import { openLabStore } from '../../store/open.js';
import { buildSecurityApps } from './app.js';
import { FeedSigner } from './feed-signer.js';
import { PartCredentials } from './part-credentials.js';
import { ServiceRegistry } from './registry.js';
import { HOLD_MS, RevocationBook } from './revocations.js';

const config = readPartConfig('security');
// The lab clock (tickets' iat, challenges, revocations' notBefore, audit times), handed to the
// other parts with /v1/keys and the revocation feed; the store's clock too: on two clocks, a
// revocation after a wall clock stepped back would get a notBefore older than the tickets it must refuse.
// A restart by the watchman within this lab keeps the lab's time (lab-clock-mark.ts, RunAnchor).
// Replicas (issue 17) share the lab's anchor exactly: one clock for all of them.
const now = homeLabClock(config.home, {
  run: { labId: config.labId, shared: (config.peerTicketKeyFiles ?? []).length > 0 },
});
// Resident: while the lab runs this process is the store's only writer, so it keeps the store in
// memory and the audit chain's head (every write still on disk before it is acknowledged).
// audit:signed: every record this service appends is told to the checkpointer (made below, once
// the store is open: it reads the log's ends at start).
let checkpointer: AuditCheckpointer | undefined;
const store = openLabStore(config.home, {
  resident: true,
  now: () => new Date(now()),
  onAudit: (record) => checkpointer?.observe(record),
});
if (config.auditKeyFile && config.auditCheckpointsFile) {
  const checkpointsFile = config.auditCheckpointsFile;
  const written = await readCheckpoints(checkpointsFile).catch(() => []);
  checkpointer = new AuditCheckpointer({
    privateKey: await loadAuditPrivateKey(config.auditKeyFile),
    checkpointsFile,
    now,
    ...(written.length ? { lastWritten: written[written.length - 1] } : {}),
    readLog: async () => {
      const records = await store.auditRecords();
      return { first: records[0], last: records[records.length - 1] };
    },
    log: (line) => console.log(`security service: ${line}`),
  });
  await checkpointer.start();
}
const registry = new ServiceRegistry(store, config.defences.attestation);
await registry.load();
// feeds:signed: the feeds go out signed with the lab's feed key (not the ticket key), each issued
// again at a sixth of the maximum staleness, and a quiet revocation poll is answered as often, so
// that a part on a quiet lab always holds a fresh one.
const feedKeyFile = config.defences.feeds === 'signed' ? config.feedKeyFile : undefined;
if (config.defences.feeds === 'signed' && feedKeyFile === undefined) {
  console.error('security service: not starting: INVALID_INPUT: signed feeds need feedKeyFile in its config');
  process.exit(1);
}
const feedPrivateKey = feedKeyFile ? createPrivateKey(readFileSync(feedKeyFile, 'utf8')) : undefined;
const feeds = feedPrivateKey
  ? new FeedSigner(
      { kid: jwkThumbprint(feedPrivateKey), privateKey: feedPrivateKey },
      config.labId,
      now,
      config.feedMaxAgeMs ?? DEFAULT_FEED_MAX_AGE_SECONDS * 1000,
    )
  : undefined;
const revocations = new RevocationBook(store, {
  namesUntrusted: enforcesAttestation(config.defences.attestation) && config.defences.links === 'mtls',
  ...(feeds ? { holdMs: Math.min(HOLD_MS, feeds.reissueMs) } : {}),
});
await revocations.load();
const privateKey = createPrivateKey(readFileSync(config.ticketKeyFile, 'utf8'));
// Replicas (issue 17): each signs with its own key and publishes every replica's.
const peerTicketKeys = (config.peerTicketKeyFiles ?? []).map((file) =>
  createPublicKey(readFileSync(file, 'utf8')),
);
const labToken = readSecret(config.labTokenFile);
const ca = config.caDir ? await loadLabCa(config.caDir) : undefined;
// links:mtls: the control-plane listener's identity, issued to itself from the lab CA at each start
// (it holds the CA), so a restarted service proves who it is the same way. It lasts as long as the
// identities it issues and is renewed by the service itself at half-life (below): with the library's
// hour and no renewal, the control plane took no new connection an hour after `lab up`.
const controlLifetime = config.identityTtlSeconds ?? DEFAULT_CERT_TTL_SECONDS;
const controlTlsNow = async (lab: LabCa): Promise<ServerTlsOptions> =>
  serverTlsOptions(
    await issueServiceCertificate(lab, {
      name: SECURITY_SERVICE,
      kind: 'security',
      ttlSeconds: controlLifetime,
      // on the lab clock, as the identities it issues (attestation-report.ts, identityValidity)
      now: () => new Date(now()),
    }),
    lab.certPem,
  );
const controlTls = ca && config.controlPort !== undefined ? await controlTlsNow(ca) : undefined;
// The gateway holds the lab token only when the parts have nothing better: otherwise the push
// carries none (a process on the gateway's port would collect it) and only prompts the gateway to
// fetch the table again over the control plane.
// With signed feeds the gateway takes the table from a signed fetch only: the push is a prompt.
const pushToken = partsHoldLabToken(config.defences) && !feeds ? labToken : undefined;

// edge:tls: the gateway is reached like any of its clients does, trusting only the lab CA, its
// certificate's end judged on the lab clock too (it is this service's own).
const gatewayEdge = config.gatewayCaFile
  ? new Agent({
      connect: edgeConnectOptions(
        readFileSync(config.gatewayCaFile, 'utf8'),
        undefined,
        certificateEndClock(now),
      ),
    })
  : undefined;

const { app, control } = buildSecurityApps(
  {
    labId: config.labId,
    defences: config.defences,
    store,
    registry,
    revocations,
    ...(feeds ? { feeds } : {}),
    signingKey: { kid: jwkThumbprint(privateKey), privateKey },
    peerTicketKeys,
    sealKey: Buffer.from(readSecret(config.sealKeyFile), 'base64url'),
    labToken,
    ...(config.partCredentialIndexFile
      ? { partCredentials: PartCredentials.fromFile(config.partCredentialIndexFile) }
      : {}),
    ...(ca ? { ca } : {}),
    ...(config.gatewayUrl ? { gatewayUrl: config.gatewayUrl } : {}),
    ...(config.identityTtlSeconds === undefined ? {} : { identityTtlSeconds: config.identityTtlSeconds }),
    ticketTtlSeconds: config.ticketTtlSeconds,
    challengeTtlSeconds: config.challengeTtlSeconds,
    onAttestation: async (services) => {
      if (!config.gatewayUrl) return;
      // The gateway may not be up yet (it starts last; refused at once); it polls at start anyway.
      // Awaited, with a longer bound (5 s, was 2 s), because the report that caused it is answered after it: a
      // restart then starts the service only once the gateway knows its verdict (the busy matrix
      // had the gateway, 2 s of patience spent, serve attestation.env-injection's module).
      await request(`${config.gatewayUrl}/internal/attestations`, {
        ...(gatewayEdge ? { dispatcher: gatewayEdge } : {}),
        method: 'POST',
        headers: {
          ...(pushToken ? { authorization: `Bearer ${pushToken}` } : {}),
          'content-type': 'application/json',
        },
        body: JSON.stringify({ services: services.map((s) => ({ name: s.name, state: s.state })) }),
        // under the CLI's own 10 s for the report that waits for it
        headersTimeout: 5000,
        bodyTimeout: 5000,
      })
        .then((r) => r.body.dump())
        .catch(() => undefined);
    },
  },
  controlTls,
);

// The control plane first: once the plain port answers, the watchman may ask this service to prove
// who it is there.
if (control && config.controlPort !== undefined)
  await control.listen({ host: config.host, port: config.controlPort });
await app.listen({ host: config.host, port: config.port });

// On a store shared with other replicas, what another one changed (a revocation, a registration,
// an attestation) reaches this one's registry and revocation feed at its commit (LISTEN/NOTIFY),
// one reload at a time, and one more when told again meanwhile.
let reloading: Promise<void> | undefined;
let reloadAgain = false;
const reloadFromStore = (): void => {
  if (reloading) {
    reloadAgain = true;
    return;
  }
  reloading = (async () => {
    do {
      reloadAgain = false;
      await registry.load();
      await revocations.storeChanged();
    } while (reloadAgain);
  })()
    .catch((err: Error) =>
      console.log(`security service: reload after a store change failed: ${err.message}`),
    )
    .finally(() => {
      reloading = undefined;
    });
};
const stopFollowing = await store.replicas?.changes.follow(reloadFromStore, (line) =>
  console.log(`security service: ${line}`),
);

// New connections to the control plane get the renewed certificate; open ones keep theirs (the
// parts rebuild their connections when their own identity is renewed).
const controlRenewal =
  control && ca
    ? setInterval(
        () =>
          void controlTlsNow(ca)
            .then((tls) => (control.server as unknown as TlsServer).setSecureContext(tls))
            .catch((err: Error) =>
              console.log(`security service: control-plane certificate not renewed: ${err.message}`),
            ),
        (controlLifetime * 1000) / 2,
      )
    : undefined;
console.log(
  `${config.part} (${config.posture}, ${peerTicketKeys.length + 1} ticket key${peerTicketKeys.length ? 's' : ''}) listening on ${config.host}:${config.port}${
    control ? `, control plane (mTLS) on ${config.host}:${config.controlPort}` : ''
  }`,
);

const stop = (): void => {
  if (controlRenewal) clearInterval(controlRenewal);
  void Promise.allSettled([app.close(), control?.close(), stopFollowing?.()])
    .then(() => store.close())
    // lab down: a last signed head over everything this service wrote
    .then(() => checkpointer?.stop())
    .finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 1500).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
