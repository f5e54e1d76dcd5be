import type { Server as TlsServer } from 'node:tls';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AttestationGate } from '../../defences/attestation.js';
import type { AttestationTable } from '../../defences/attestation-table.js';
import type { EdgeServer } from '../../defences/edge.js';
import type { FeedGuard } from '../../defences/feeds.js';
import { connectionLimitsFor, type GatewayLimits } from '../../defences/limits.js';
import type { Defences } from '../../defences/presets.js';
import type { BasicAtGateway } from '../../defences/request/gateway-basic.js';
import type { GatewayAuthenticator } from '../../defences/request/types.js';
import type { RevocationView } from '../../protocol/revocation-list.js';
import { guardConnections } from '../connection-guard.js';
import { createHttpApp } from '../http.js';
import { describeApi } from '../openapi.js';
import { logRefusals } from './refusal-log.js';
import { attestationPushRoutes } from './routes/attestation-push.js';
import { basicLoginRoutes } from './routes/basic-login.js';
import { forwardRoutes } from './routes/forward.js';
import { loginRelayRoutes } from './routes/login-relay.js';
import type { Upstream } from './upstream.js';

export type { Upstream, UpstreamRequest, UpstreamResponse } from './upstream.js';

/**
 * How users log in through the gateway: `basic`, a check of HTTP basic credentials (`GET
 * /auth/basic`, so a typo shows at login rather than at the first call); `relay`, the login steps
 * (`POST /auth/challenge`, `/auth/verify`) relayed to the security service, which in Docker is
 * not reachable otherwise, and here seen with the real client address (the login-flood defence).
 */
export type GatewayLogin = { kind: 'basic'; basic: BasicAtGateway } | { kind: 'relay'; auth: Upstream };

/** A gateway is handed its defences as strategies (src/defences/), each required: no posture checks. */
export interface GatewayDeps {
  /** the defences in force, for /healthz and the log; the strategies below carry them out */
  defences: Defences;
  /** edge: plain HTTP or HTTPS with the gateway's lab-CA certificate, to the users */
  edge: EdgeServer;
  /** service name → how to reach it */
  upstreams: Record<string, Upstream>;
  /** request: who a request comes from (basic, bearer ticket, ticket + proof) */
  authenticate: GatewayAuthenticator;
  /** attestation: whether a service may be sent requests */
  attestationGate: AttestationGate;
  /** limits: per address, per user, logins */
  limits: GatewayLimits;
  login: GatewayLogin;
  /** the attestation table the gate reads, updated by pushes from the security service */
  attestation: AttestationTable;
  /** revoked users and quarantined services, kept current by the security service's feed */
  revocations?: RevocationView;
  now?: () => number;
  /** the lab token the security service pushes attestations with; without it, pushes are refused */
  labToken?: string;
  /** links:mtls: what a push prompts instead (routes/attestation-push.ts) */
  refreshAttestation?: () => Promise<void>;
  /** feeds:signed: every push is only a prompt (routes/attestation-push.ts) */
  pushPromptsOnly?: boolean;
  /** feeds: whether the control-plane state the forwarding acts on is fresh enough (plain: always) */
  feeds?: FeedGuard;
  /** links:mtls: the login relay reaches the control plane, where its certificate vouches for the client address */
  relayVouchedByCertificate?: boolean;
  /** one line per refusal; stderr by default */
  log?: (line: string) => void;
}

/**
 * The API gateway, the lab's only entry point: `/svc/<name>/...` is checked according to the posture
 * (password, bearer ticket, or ticket + proof of possession), rate-limited, refused when the service
 * is not attested, and forwarded to the service with only what it needs. Bodies are kept as raw bytes,
 * so the proof covers exactly what is forwarded. Each part is a plugin in routes/.
 */
export function buildGateway(deps: GatewayDeps): FastifyInstance {
  const now = deps.now ?? Date.now;
  const log = deps.log ?? ((line: string) => process.stderr.write(`${line}\n`));

  const { edge } = deps;
  const app = createHttpApp(edge.serverTls ? { https: edge.serverTls } : {});
  // A renewed certificate serves new handshakes at once; connections already open keep theirs.
  const stopRenewals = edge.onRenewed(() => {
    if (edge.serverTls) (app.server as unknown as TlsServer).setSecureContext(edge.serverTls);
  });
  app.addHook('onClose', async () => {
    stopRenewals();
  });
  const connections = connectionLimitsFor(deps.defences.limits);
  if (connections) guardConnections(app.server, connections);
  describeApi(app, {
    title: 'trusted-ms gateway',
    description:
      "The lab's only entry point: the login (relayed to the security service), and /svc/<service>/... with a ticket and, in the trusted posture, a proof (docs/protocol.md).",
  });
  app.removeAllContentTypeParsers();
  const raw = (_req: FastifyRequest, body: Buffer, done: (err: Error | null, body?: Buffer) => void) =>
    done(null, body);
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, raw);
  app.addContentTypeParser('*', { parseAs: 'buffer' }, raw);
  logRefusals(app, log, now);

  app.get('/healthz', async () => ({
    ok: true,
    part: 'gateway',
    defences: deps.defences,
    ...(deps.feeds ? { feeds: deps.feeds.status() } : {}),
  }));
  app.register(attestationPushRoutes, deps);
  const { login } = deps;
  if (login.kind === 'basic') app.register(basicLoginRoutes, { basic: login.basic });
  else app.register(loginRelayRoutes, { ...deps, auth: login.auth });
  app.register(forwardRoutes, deps);
  return app;
}
