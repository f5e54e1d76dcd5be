import { describe, expect, it } from 'vitest';
import type { Posture } from '../../../src/defences/posture.js';
import { type Ablation, defencesFor } from '../../../src/defences/presets.js';
import { labTopology, selectServices } from '../../../src/kernel/topology.js';
import { partsToPlace, planLab, serviceMounts } from '../../../src/lab/plan.js';
import type { PartPlacement } from '../../../src/lab/runtimes/runtime.js';

const dir = '/home/u/.trusted-ms/lab';
const secrets = {
  labTokenFile: `${dir}/lab-token`,
  ticketKeyFile: `${dir}/ticket.key`,
  sealKeyFile: `${dir}/seal.key`,
  sinkTokenFile: `${dir}/sink-token`,
  feedKeyFile: `${dir}/feed-key.pem`,
};
const feedTrustKeys = [{ kid: 'feed-kid', publicKeyPem: 'PEM' }];

/** The plan for a posture as a process lab would place it (ports from 4000 on 127.0.0.1). */
function plan(
  posture: Posture,
  opts: { without?: Ablation[]; runtimeKind?: 'process' | 'docker'; securityReplicas?: number } = {},
) {
  const defences = defencesFor(posture, opts.without);
  const services = selectServices(labTopology(), 4);
  const placements = new Map<string, PartPlacement>(
    partsToPlace(dir, defences, services, opts.securityReplicas).map((p, i) => [
      p.name,
      {
        listenHost: '127.0.0.1',
        port: 4000 + i,
        url: `${p.scheme}://127.0.0.1:${4000 + i}`,
        // as the process runtime places a control-plane listener: a second port
        ...(p.controlPlane
          ? {
              control: {
                port: 5000 + i,
                url: `https://127.0.0.1:${5000 + i}`,
                hostUrl: `https://127.0.0.1:${5000 + i}`,
              },
            }
          : {}),
      },
    ]),
  );
  return planLab({
    labId: 'abcd1234',
    home: '/home/u/.trusted-ms',
    dir,
    posture,
    defences,
    services,
    runtimeKind: opts.runtimeKind ?? 'process',
    placements,
    secrets,
    feedTrustKeys,
    ...(opts.securityReplicas === undefined ? {} : { securityReplicas: opts.securityReplicas }),
  });
}

describe('the lab plan (defences + topology + placements -> the parts to launch)', () => {
  it('--security-replicas 2 (trusted): a second security part with its own ports and key, publishing both; every part told both control planes', () => {
    const p = plan('trusted', { securityReplicas: 2 });
    const [second] = p.securityReplicas;
    expect(p.securityReplicas).toHaveLength(1);
    expect(second?.config.part).toBe('security-2');
    expect(second?.config.port).not.toBe(p.security.config.port);
    expect(second?.config.controlPort).not.toBe(p.security.config.controlPort);
    expect(second?.config.ticketKeyFile).not.toBe(p.security.config.ticketKeyFile);
    expect(p.security.config.peerTicketKeyFiles).toEqual([`${dir}/security-2-ticket-key.pub.pem`]);
    expect(second?.config.peerTicketKeyFiles).toEqual([`${dir}/security-ticket-key.pub.pem`]);
    const controlPlanes = [p.security.config.controlPort, second?.config.controlPort].map(
      (port) => `https://127.0.0.1:${port}`,
    );
    expect(p.gateway.config.securityReplicaUrls).toEqual(controlPlanes);
    for (const s of p.services) expect(s.config.securityReplicaUrls).toEqual(controlPlanes);
    expect(p.securityReplicaHosts?.map((r) => r.controlPlaneUrl)).toEqual(controlPlanes);
    // One replica: the plan of before, no list anywhere.
    const one = plan('trusted');
    expect(one.securityReplicas).toEqual([]);
    expect(one.gateway.config.securityReplicaUrls).toBeUndefined();
    expect(one.security.config.peerTicketKeyFiles).toBeUndefined();
  });

  it('trusted: every service on https with its identity and the CA mounted, the gateway likewise', () => {
    const p = plan('trusted');
    for (const s of p.services) {
      expect(s.launch.url.startsWith('https://')).toBe(true);
      expect(s.config.identityDir).toBe(`${dir}/services/${s.config.part}/identity`);
      expect(s.launch.mounts?.map((m) => m.path)).toEqual([
        `${dir}/parts/${s.config.part}.json`,
        s.config.identityDir,
        `${dir}/ca/ca.pem`,
      ]);
      for (const url of Object.values(s.config.peers)) expect(url.startsWith('https://')).toBe(true);
    }
    expect(p.gateway.config.identityDir).toBe(p.gatewayIdentityDir);
    expect(p.gateway.launch.mounts?.map((m) => m.path)).toContain(p.caFile);
    expect(p.security.config.caDir).toBe(p.caDir);
    // The security service writes the store: the whole home, writable, is its only mount.
    expect(p.security.launch.mounts).toEqual([{ path: '/home/u/.trusted-ms', writable: true }]);
  });

  it('none: plain http, no identity, no CA; the watchman only because processes need restarting', () => {
    const p = plan('none');
    for (const s of p.services) {
      expect(s.launch.url.startsWith('http://')).toBe(true);
      expect(s.config.identityDir).toBeUndefined();
      expect(s.launch.mounts).toEqual([{ path: `${dir}/parts/${s.config.part}.json` }]);
    }
    expect(p.security.config.caDir).toBeUndefined();
    expect(p.supervisor?.config.kind).toBe('supervisor');
    expect(plan('none', { runtimeKind: 'docker' }).supervisor).toBeUndefined();
    // On Docker a measured lab still has one: it re-measures the services.
    expect(plan('trusted', { runtimeKind: 'docker' }).supervisor?.config.intervalSeconds).toBe(10);
  });

  it('a service that reports on itself (paper) gets its own credential, never the lab token; trusted minus mTLS gets no identity', () => {
    // Issue 13: with the lab token a paper service could call every admin route.
    for (const s of plan('paper').services) {
      expect(s.launch.mounts?.map((m) => m.path)).toContain(`${dir}/credentials/${s.config.part}.secret`);
      expect(s.launch.mounts?.map((m) => m.path)).not.toContain(secrets.labTokenFile);
      expect(s.config.labTokenFile).toBeUndefined();
    }
    for (const s of plan('trusted').services) {
      expect(s.launch.mounts?.map((m) => m.path)).not.toContain(secrets.labTokenFile);
      expect(s.config.labTokenFile).toBeUndefined();
    }
    // The baseline keeps what it had: parts are who they say, no credentials of their own.
    expect(plan('none').credentialParts).toEqual([]);
    expect(plan('none').security.config.partCredentialIndexFile).toBeUndefined();
    const paper = plan('paper');
    expect(paper.credentialParts).toEqual(['gateway', ...paper.services.map((s) => s.config.part)]);
    expect(paper.security.config.partCredentialIndexFile).toBe(`${dir}/credentials/index.json`);
    expect(paper.gateway.launch.mounts?.map((m) => m.path)).toContain(`${dir}/credentials/gateway.secret`);
    expect(paper.gateway.config.labTokenFile).toBe(secrets.labTokenFile);
  });

  it('trusted: the parts reach the security service on its control plane, and none holds the lab token', () => {
    const p = plan('trusted');
    expect(p.security.config.controlPort).toBe(5000);
    expect(p.credentialParts).toEqual([]);
    for (const part of [p.gateway, ...p.services]) {
      expect(part.config.controlPlaneUrl).toBe('https://127.0.0.1:5000');
      expect(part.config.labTokenFile).toBeUndefined();
      expect(part.launch.mounts?.map((m) => m.path)).not.toContain(secrets.labTokenFile);
    }
    expect(p.supervisor?.config).toMatchObject({
      identityDir: p.supervisorIdentityDir,
      caFile: p.caFile,
      controlPlaneUrl: 'https://127.0.0.1:5000',
    });
    // without mTLS: no control plane, credentials of their own
    const plain = plan('trusted', { without: ['links:mtls'] });
    expect(plain.security.config.controlPort).toBeUndefined();
    expect(plain.gateway.config.controlPlaneUrl).toBeUndefined();
    expect(plain.gateway.config.partCredentialFile).toBe(`${dir}/credentials/gateway.secret`);
    for (const s of plan('trusted', { without: ['links:mtls'] }).services) {
      expect(s.config.identityDir).toBeUndefined();
      expect(s.launch.url.startsWith('http://')).toBe(true);
    }
  });

  it('feeds:signed: the security service signs with the feed key (not a ticket key); the gateway and every service get the public trust bundle and the bound, never the private key', () => {
    const p = plan('trusted');
    expect(p.security.config.feedKeyFile).toBe(secrets.feedKeyFile);
    expect(p.security.config.feedKeyFile).not.toBe(p.security.config.ticketKeyFile);
    for (const part of [p.gateway, ...p.services]) {
      expect(part.config.feedTrust).toEqual({ keys: feedTrustKeys, maxAgeMs: 30_000 });
      expect(part.config.feedStatusFile).toBe(`${dir}/feeds/${part.config.part}.json`);
      expect(part.launch.mounts?.map((m) => m.path)).not.toContain(secrets.feedKeyFile);
      expect(JSON.stringify(part.config)).not.toContain('feed-key.pem');
    }
    // without it, and in the baseline, nobody is told of feed keys and the security service signs nothing
    for (const q of [plan('trusted', { without: ['feeds:signed'] }), plan('none'), plan('paper')]) {
      expect(q.security.config.feedKeyFile).toBeUndefined();
      for (const part of [q.gateway, ...q.services]) expect(part.config.feedTrust).toBeUndefined();
    }
  });

  it('the sink reads its records with a token of its own, in every posture: never the lab token (a fake on its port collected it)', () => {
    for (const posture of ['none', 'paper', 'trusted'] as const) {
      const { sink } = plan(posture);
      expect(sink.config.readTokenFile).toBe(secrets.sinkTokenFile);
      expect('labTokenFile' in sink.config).toBe(false);
      expect(sink.launch.mounts?.map((m) => m.path)).toContain(secrets.sinkTokenFile);
      expect(sink.launch.mounts?.map((m) => m.path)).not.toContain(secrets.labTokenFile);
    }
  });

  it('each service knows its callees at their placed addresses and is told who calls it', () => {
    const p = plan('trusted');
    const byName = new Map(p.services.map((s) => [s.config.part, s]));
    for (const s of p.services) {
      for (const [callee, url] of Object.entries(s.config.peers)) {
        expect(url).toBe(byName.get(callee)?.launch.url);
        expect(JSON.parse(byName.get(callee)?.serviceJson ?? '{}').callers).toContain(s.config.part);
      }
      // the per-edge peer policy travels in the callee's measured definition, one entry per caller
      const peerCalls = JSON.parse(s.serviceJson).peerCalls;
      expect(Object.keys(peerCalls).sort()).toEqual([...JSON.parse(s.serviceJson).callers].sort());
      for (const rules of Object.values(peerCalls))
        expect(rules).toEqual(['GET /healthz', 'GET /db/:db/records']);
    }
    expect(Object.keys(p.gateway.config.services).sort()).toEqual([...byName.keys()].sort());
  });

  it('a restart mounts what lab up mounted for the service', () => {
    for (const posture of ['none', 'paper', 'trusted'] as const) {
      for (const s of plan(posture).services) {
        expect([{ path: s.launch.configFile }, ...serviceMounts(s.config)]).toEqual(s.launch.mounts);
      }
    }
  });
});
