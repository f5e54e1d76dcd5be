import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { jwkThumbprint } from '../../../src/crypto/thumbprint.js';
import { defencesFor } from '../../../src/defences/presets.js';
import { jsonRequest } from '../../../src/kernel/http-client.js';
import {
  type CertificateTimes,
  certificateTimes,
  type HeldIdentity,
  IdentityRenewal,
  type IssuedIdentity,
  RETRY_AFTER_REFUSAL_MS,
  type RenewalDeps,
  renewalDueAt,
} from '../../../src/lab/supervisor/renewal.js';
import { CERT_BACKDATE_MS, createLabCa, type LabCa } from '../../../src/pki/ca.js';
import { issueServiceCertificate, labIdentityTtl } from '../../../src/pki/identity.js';
import { writeIdentity } from '../../../src/pki/identity-files.js';
import { buildSecurityService } from '../../../src/services/security/app.js';
import { ServiceRegistry } from '../../../src/services/security/registry.js';
import { RevocationBook } from '../../../src/services/security/revocations.js';
import { openLabStore } from '../../../src/store/open.js';
import type { LabStore } from '../../../src/store/store.js';
import { quarantineIn } from '../../../src/users/revocations.js';

const LAB = 'ab12cd34';
const TOKEN = 'lab-token-for-tests-0123456789';
const T0 = Date.parse('2026-12-07T03:00:00Z');

describe('when an identity is due', () => {
  it('is half-way between its issue (notBefore + the back-dating) and its expiry', () => {
    const cert = { notBefore: T0 - CERT_BACKDATE_MS, notAfter: T0 + 20_000 };
    expect(renewalDueAt(cert)).toBe(T0 + 10_000);
    expect(renewalDueAt({ notBefore: T0 - CERT_BACKDATE_MS, notAfter: T0 + 300_000 })).toBe(T0 + 150_000);
  });

  it('is at once for a certificate valid for less than its back-dating', () => {
    expect(renewalDueAt({ notBefore: T0, notAfter: T0 + 1000 })).toBe(T0 + 1000);
  });

  it('lab up accepts 10 s to a day, in whole seconds, with a stable code otherwise', () => {
    expect(labIdentityTtl(undefined)).toBe(300);
    expect(labIdentityTtl(20)).toBe(20);
    for (const bad of [9, 0, -1, 20.5, 86_401, Number.NaN]) {
      expect(() => labIdentityTtl(bad)).toThrow(expect.objectContaining({ code: 'INVALID_INPUT' }));
    }
  });
});

let fakeCa: LabCa;
beforeAll(async () => {
  fakeCa = await createLabCa({ labId: LAB });
});

/** A renewal against fakes: a clock, certificates as times, an issuer that answers as told. */
function fakeRenewal(opts: { refuse?: Set<string>; fail?: boolean; watchman?: boolean } = {}) {
  let now = T0;
  const certs = new Map<string, CertificateTimes>();
  const written: string[] = [];
  const asked: string[][] = [];
  const unmeasured: string[] = [];
  const issue = (name: string): Promise<IssuedIdentity> =>
    issueServiceCertificate(fakeCa, {
      name,
      ttlSeconds: 20,
      kind: name === 'gateway' || name === 'supervisor' ? name : 'service',
    });
  const holders: HeldIdentity[] = [
    { part: 'orders', kind: 'service', dir: '/id/orders' },
    { part: 'catalog', kind: 'service', dir: '/id/catalog' },
    { part: 'gateway', kind: 'gateway', dir: '/id/gateway' },
    ...(opts.watchman ? [{ part: 'supervisor', kind: 'supervisor' as const, dir: '/id/supervisor' }] : []),
  ];
  const fresh = () => ({ serial: String(now), notBefore: now - CERT_BACKDATE_MS, notAfter: now + 20_000 });
  for (const h of holders) certs.set(h.dir, fresh());
  const deps: RenewalDeps = {
    held: async () => holders,
    current: async (dir) => certs.get(dir),
    renewServices: async (names) => {
      asked.push(names);
      if (opts.fail) throw Object.assign(new Error('security service down'), { code: 'SERVICE_UNAVAILABLE' });
      const identities: Record<string, IssuedIdentity> = {};
      const states: Record<string, string> = {};
      for (const n of names) {
        states[n] = opts.refuse?.has(n) ? 'untrusted' : 'trusted';
        if (!opts.refuse?.has(n)) identities[n] = await issue(n);
      }
      return { identities, states };
    },
    renewUnmeasured: async (kind) => {
      unmeasured.push(kind);
      return issue(kind);
    },
    write: async (dir) => {
      written.push(dir);
      certs.set(dir, fresh());
    },
    now: () => now,
  };
  const renewal = new IdentityRenewal(deps);
  return {
    renewal,
    written,
    asked,
    unmeasured,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

describe('a renewal round', () => {
  it('asks nothing before half-life', async () => {
    const f = fakeRenewal();
    f.advance(9_999);
    expect(await f.renewal.round()).toEqual([]);
    expect(f.asked).toEqual([]);
    expect(f.written).toEqual([]);
  });

  it('at half-life measures and asks for every due service in one call, and renews the gateway', async () => {
    const f = fakeRenewal();
    f.advance(10_000);
    const outcomes = await f.renewal.round();
    expect(f.asked).toEqual([['orders', 'catalog']]);
    expect(outcomes.map((o) => `${o.part}:${o.outcome}`)).toEqual([
      'orders:renewed',
      'catalog:renewed',
      'gateway:renewed',
    ]);
    expect(f.written).toEqual(['/id/orders', '/id/catalog', '/id/gateway']);
    // renewed: not due again until the new certificate's half-life
    f.advance(9_000);
    expect(await f.renewal.round()).toEqual([]);
    expect(f.asked).toHaveLength(1);
  });

  it("renews the watchman's own identity at half-life, unmeasured, like the gateway's", async () => {
    const f = fakeRenewal({ watchman: true });
    f.advance(10_000);
    const outcomes = await f.renewal.round();
    expect(f.asked).toEqual([['orders', 'catalog']]);
    expect(f.unmeasured).toEqual(['gateway', 'supervisor']);
    expect(outcomes.find((o) => o.part === 'supervisor')?.outcome).toBe('renewed');
    expect(f.written).toContain('/id/supervisor');
    f.advance(9_000);
    expect(await f.renewal.round()).toEqual([]);
  });

  it('writes nothing for a service the security service refused, and asks again only after a pause', async () => {
    const f = fakeRenewal({ refuse: new Set(['orders', 'catalog']) });
    f.advance(10_000);
    const outcomes = await f.renewal.round();
    expect(outcomes.filter((o) => o.part !== 'gateway')).toEqual([
      { part: 'orders', outcome: 'refused', reason: 'untrusted' },
      { part: 'catalog', outcome: 'refused', reason: 'untrusted' },
    ]);
    expect(f.written).not.toContain('/id/orders');
    f.advance(1000);
    await f.renewal.round();
    expect(f.asked).toHaveLength(1);
    f.advance(RETRY_AFTER_REFUSAL_MS);
    await f.renewal.round();
    expect(f.asked).toHaveLength(2);
  });

  it('reports a failure to ask, writes nothing, and tries again at the next look', async () => {
    const f = fakeRenewal({ fail: true });
    f.advance(10_000);
    const outcomes = await f.renewal.round();
    expect(outcomes.filter((o) => o.part === 'orders')).toEqual([
      { part: 'orders', outcome: 'failed', reason: 'SERVICE_UNAVAILABLE: security service down' },
    ]);
    f.advance(1000);
    await f.renewal.round();
    expect(f.asked).toHaveLength(2);
    expect(f.written.filter((d) => d !== '/id/gateway')).toEqual([]);
  });
});

describe('renewal against the security service (gating, files)', () => {
  let dir: string;
  let store: LabStore;
  let ca: LabCa;
  let app: FastifyInstance;
  let url: string;
  let book: RevocationBook;
  const hashes: Record<string, string> = { orders: 'sha256:good-orders', catalog: 'sha256:good-catalog' };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tms-renew-'));
    store = openLabStore(join(dir, 'home'));
    ca = await createLabCa({ labId: LAB });
    const registry = new ServiceRegistry(store, 'measured');
    await registry.register(Object.entries(hashes).map(([name, hash]) => ({ name, hash })));
    book = new RevocationBook(store, { namesUntrusted: true });
    await book.load();
    const signing = generateKeyPairSync('ed25519');
    app = buildSecurityService({
      labId: LAB,
      defences: defencesFor('trusted'),
      store,
      registry,
      revocations: book,
      signingKey: { kid: jwkThumbprint(signing.publicKey), privateKey: signing.privateKey },
      sealKey: Buffer.alloc(32, 3),
      labToken: TOKEN,
      ca,
      identityTtlSeconds: 20,
      ticketTtlSeconds: 600,
      challengeTtlSeconds: 30,
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  });
  afterEach(async () => {
    await app.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** The watchman's renewal with this security service, measurements given by `measured`. */
  const renewal = (measured: Record<string, string>, now: () => number) =>
    new IdentityRenewal({
      held: async () =>
        ['orders', 'catalog'].map((part) => ({ part, kind: 'service' as const, dir: join(dir, part) })),
      current: certificateTimes,
      renewServices: async (names) => {
        const r = await jsonRequest<{
          services: { name: string; state: string }[];
          identities: Record<string, IssuedIdentity>;
        }>(`${url}/v1/admin/attestations`, {
          token: TOKEN,
          body: { reports: names.map((name) => ({ name, hash: measured[name] })), issueIdentity: true },
        });
        return {
          identities: r.identities,
          states: Object.fromEntries(r.services.map((s) => [s.name, s.state])),
        };
      },
      renewUnmeasured: async () => {
        throw new Error('no gateway here');
      },
      write: writeIdentity,
      now,
    });

  it('renews a trusted service with a new 20 s certificate (key 0600), and not a tampered or quarantined one', async () => {
    for (const name of ['orders', 'catalog']) {
      await writeIdentity(join(dir, name), await issueServiceCertificate(ca, { name, ttlSeconds: 20 }));
    }
    const before = await certificateTimes(join(dir, 'orders'));
    const later = () => Date.now() + 11_000;
    const tampered = { ...hashes, catalog: 'sha256:tampered' };
    const outcomes = await renewal(tampered, later).round();
    expect(outcomes.map((o) => `${o.part}:${o.outcome}:${o.reason ?? ''}`)).toEqual([
      'orders:renewed:',
      'catalog:refused:untrusted',
    ]);
    const after = await certificateTimes(join(dir, 'orders'));
    expect(after.serial).not.toBe(before.serial);
    expect(after.notAfter - (after.notBefore + CERT_BACKDATE_MS)).toBe(20_000);
    expect((await stat(join(dir, 'orders', 'key.pem'))).mode & 0o777).toBe(0o600);
    const cert = new X509Certificate(await readFile(join(dir, 'orders', 'cert.pem'), 'utf8'));
    expect(cert.subjectAltName).toContain(`spiffe://trusted-ms/${LAB}/service/orders`);

    await quarantineIn(store, 'orders', 'admin');
    await book.load();
    const quarantined = await renewal(hashes, () => Date.now() + 11_000).round();
    expect(quarantined.map((o) => `${o.part}:${o.outcome}`)).toEqual(['orders:refused', 'catalog:renewed']);
  });
});
