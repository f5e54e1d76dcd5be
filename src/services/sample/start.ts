import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Agent, type Dispatcher, request } from 'undici';
import { hashDirectory } from '../../attestation/tree-hash.js';
import { acceptsSelfReport } from '../../defences/attestation.js';
import { feedsFor, PLAIN_FEEDS } from '../../defences/feeds.js';
import { linksFor } from '../../defences/links.js';
import { parseCallerRules } from '../../defences/peer-calls.js';
import { ticketKindOf } from '../../defences/presets.js';
import { GATEWAY_VOUCHES, TicketAtService } from '../../defences/request/service.js';
import { isTrustedMsError, TrustedMsError } from '../../errors.js';
import {
  codeDirOf,
  DEFINITION_VARIABLE,
  readPartConfig,
  readSecret,
  type ServicePartConfig,
  securityUrlsOf,
} from '../../kernel/part-config.js';
import { LabClock } from '../../protocol/lab-clock.js';
import { orFailClosed } from '../fail-closed.js';
import { RenewingDispatcher } from '../renewing-dispatcher.js';
import { RevocationFeed } from '../revocation-feed.js';
import { SecurityClient } from '../security-client.js';
import { buildSampleService, type PeerClient, type SampleDefinition } from './app.js';

/**
 * Starts a sample microservice (what `main.ts`, bundled into `service.mjs`, runs): reads its part
 * config and `service.json`, gets the ticket keys (paper, trusted), reports its own code hash
 * (paper only: the paper's self-attestation, made before it serves anyone, as the paper says), and
 * serves HTTP, or HTTPS with client certificates in `trusted`.
 *
 * The hooks exist for the attack catalog's tampered variants in `src/attacks/payloads/`: the honest kit
 * passes none.
 */
export interface SampleKitHooks {
  /** what the service says its code hashes to (paper); the honest kit measures its own folder */
  ownHash?: (config: ServicePartConfig, security: SecurityClient) => Promise<string>;
  /** called with the app before it listens */
  extend?: (app: FastifyInstance, config: ServicePartConfig, definition: SampleDefinition) => void;
}

const CONNECT_TIMEOUT_MS = 2000;
const HEADERS_TIMEOUT_MS = 5000;
const timeouts = { headersTimeout: HEADERS_TIMEOUT_MS, bodyTimeout: HEADERS_TIMEOUT_MS } as const;

export async function startSampleService(hooks: SampleKitHooks = {}): Promise<void> {
  const config = readPartConfig('service');
  const { defences } = config;
  const codeDir = codeDirOf(config);
  const definitionFile = join(codeDir, 'service.json');
  const definition = parseDefinition(
    process.env[DEFINITION_VARIABLE] ?? readFileSync(definitionFile, 'utf8'),
    definitionFile,
  );
  const name = definition.name;

  // attestation:self: the service reports its own hash (the paper's scheme), with its own
  // credential, which also makes its confirmations of revocations count; in the baseline, with the
  // lab token when it reports.
  const selfReports = acceptsSelfReport(defences.attestation);
  const credential = config.partCredentialFile
    ? readSecret(config.partCredentialFile)
    : selfReports && config.labTokenFile
      ? readSecret(config.labTokenFile)
      : undefined;

  const links = await linksFor(defences.links, config, (line) => console.log(`${name}: ${line}`));
  const peerAgent = (peer: string): Agent =>
    new Agent({ connect: { ...links.connect(peer), timeout: CONNECT_TIMEOUT_MS }, ...timeouts });
  /** peer → the agent new requests to it go through (replaced when the identity is renewed) */
  const peerAgents = new Map(Object.keys(config.peers).map((peer) => [peer, peerAgent(peer)]));
  // links:mtls: the security service's control plane, where this service's certificate is its credential.
  // every replica of the security service (one unless `lab up --security-replicas`)
  const securityUrls = securityUrlsOf(config);
  const controlPlane = config.controlPlaneUrl !== undefined;
  // Rebuilt with the renewed certificate on each renewal, like the peer agents.
  const securityAgent = new RenewingDispatcher(
    () =>
      new Agent({
        connect: { ...(controlPlane ? links.connectControlPlane() : {}), timeout: CONNECT_TIMEOUT_MS },
        ...timeouts,
      }),
  );
  const peers: Record<string, PeerClient> = {};
  for (const [peer, url] of Object.entries(config.peers)) {
    peers[peer] = peerClient(url, () => peerAgents.get(peer) as Agent);
  }
  // New connections present the renewed certificate; the old agent finishes what it has in flight
  // (close() waits for it) and goes.
  links.onRenewed(() => {
    securityAgent.renew();
    for (const peer of peerAgents.keys()) {
      const old = peerAgents.get(peer);
      peerAgents.set(peer, peerAgent(peer));
      void old?.close().catch(() => undefined);
    }
  });

  const security = new SecurityClient(securityUrls, credential, securityAgent);
  const ticketKind = ticketKindOf(defences.login);
  // The security service's clock, followed by the feed (docs/faults.md, "Clocks").
  const clock = new LabClock();
  links.judgeEndsAlsoOn(() => clock.now());
  // feeds:signed: the revocation list (its revoked users, quarantined and untrusted peers) is what
  // every request here acts on; request:basic follows no feed (the gateway applies it).
  const feeds =
    defences.request === 'basic'
      ? PLAIN_FEEDS
      : feedsFor(
          defences.feeds,
          config,
          () => clock.now(),
          ['revocations'],
          (line) => console.log(`${name}: ${line}`),
        );
  // request:basic: the service trusts the gateway, which applies the revocations itself.
  const feed =
    defences.request === 'basic'
      ? undefined
      : new RevocationFeed(securityUrls, {
          part: name,
          dispatcher: securityAgent,
          ...(credential === undefined ? {} : { token: credential }),
          log: (line) => console.log(`${name}: ${line}`),
          clock,
          feeds,
        });
  await orFailClosed(name, feed?.start() ?? Promise.resolve());
  const authenticate =
    defences.request === 'basic' || ticketKind === undefined
      ? GATEWAY_VOUCHES
      : new TicketAtService(
          await orFailClosed(name, security.ticketVerifier(ticketKind, clock, feeds)),
          feed?.view,
        );
  const app = buildSampleService({
    definition,
    defences,
    authenticate,
    links,
    peers,
    log: (line) => console.log(line),
    ...(feed ? { revocations: feed.view } : {}),
    feeds,
  });

  if (selfReports) await selfReport();
  hooks.extend?.(app, config, definition);
  await app.listen({ host: config.host, port: config.port });
  console.log(
    `${name} (${config.posture}) listening on ${links.serverTls ? 'https' : 'http'}://${config.host}:${config.port}, ` +
      `databases ${Object.keys(definition.databases).join(', ') || '-'}, calls ${definition.calls.join(', ') || '-'}`,
  );

  const stop = (): void => {
    setTimeout(() => process.exit(0), 1000).unref();
    links.close();
    feeds.close();
    void Promise.allSettled([
      app.close(),
      feed?.stop(),
      securityAgent.stop(),
      ...[...peerAgents.values()].map((a) => a.destroy()),
    ]).finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);

  /** The paper's attestation: the service hashes its own code and vouches for it. */
  async function selfReport(): Promise<void> {
    try {
      const hash = hooks.ownHash
        ? await hooks.ownHash(config, security)
        : (await hashDirectory(codeDir)).hash;
      const result = await security.untilReady(`${name}: self-report`, () =>
        security.call<{ state?: unknown } | null>(
          'POST',
          `/v1/services/${encodeURIComponent(name)}/self-report`,
          { hash },
        ),
      );
      console.log(`${name}: self-reported ${hash}: ${String(result?.state ?? 'reported')}`);
    } catch (err) {
      console.log(
        `${name}: self-report refused: ${isTrustedMsError(err) ? err.code : 'SERVICE_UNAVAILABLE'}`,
      );
    }
  }
}

// ---------------------------------------------------------------------------------------------------

/**
 * The service's definition: handed over with its measured code by the process runtime's start, or
 * read from the code folder (a container, a program run outside the lab's start).
 */
function parseDefinition(text: string, file: string): SampleDefinition {
  const d = JSON.parse(text) as Partial<SampleDefinition> | null;
  if (
    typeof d?.name !== 'string' ||
    typeof d.databases !== 'object' ||
    d.databases === null ||
    !Array.isArray(d.calls)
  ) {
    throw new TrustedMsError('INVALID_INPUT', `${file} is not a service definition`);
  }
  return {
    name: d.name,
    description: String(d.description ?? ''),
    databases: d.databases,
    calls: d.calls,
    callers: Array.isArray(d.callers) ? d.callers : [],
    // A definition written before the per-edge policy gets the kit's own peer calls, no more.
    ...(d.peerCalls === undefined ? {} : { peerCalls: parseCallerRules(d.peerCalls, file) }),
  };
}

function peerClient(baseUrl: string, dispatcher: () => Dispatcher): PeerClient {
  return {
    async get(path, headers) {
      const res = await request(new URL(path, baseUrl), {
        method: 'GET',
        headers,
        dispatcher: dispatcher(),
        ...timeouts,
      });
      const text = await res.body.text();
      let body: unknown;
      try {
        body = text === '' ? undefined : JSON.parse(text);
      } catch {
        body = undefined;
      }
      return { status: res.statusCode, body };
    },
  };
}
