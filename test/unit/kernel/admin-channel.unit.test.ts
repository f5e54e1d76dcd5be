import { generateKeyPairSync } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import {
  createServer as createHttpServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { jwkThumbprint } from '../../../src/crypto/thumbprint.js';
import { defencesFor } from '../../../src/defences/presets.js';
import { adminChannel } from '../../../src/kernel/admin-channel.js';
import { type LabState, labDir, writeLabState } from '../../../src/kernel/lab-state.js';
import { listServices } from '../../../src/lab/attest.js';
import { labStatus } from '../../../src/lab/status.js';
import { CERT_BACKDATE_MS, createLabCa, type LabCa, saveLabCa } from '../../../src/pki/ca.js';
import { issueServiceCertificate } from '../../../src/pki/identity.js';
import { serverTlsOptions } from '../../../src/pki/mtls.js';
import { buildSecurityApps } from '../../../src/services/security/app.js';
import { ServiceRegistry } from '../../../src/services/security/registry.js';
import { RevocationBook } from '../../../src/services/security/revocations.js';
import { openLabStore } from '../../../src/store/open.js';
import { openUserAdmin } from '../../../src/users/admin.js';
import { openRevocationAdmin } from '../../../src/users/revocation-admin.js';

const LAB = 'cd34ab12';
const TOKEN = 'lab-token-for-admin-channel-tests-0123';

/** The red team's fake security service: plain HTTP, logs what it is sent, answers `{"ok":true}`. */
async function fake(seen: IncomingHttpHeaders[], tls?: Parameters<typeof createHttpsServer>[0]) {
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    seen.push(req.headers);
    res.setHeader('content-type', 'application/json');
    res.end('{"ok":true}');
  };
  const server: Server = tls ? createHttpsServer(tls, handler) : createHttpServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `${tls ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

function stateOf(securityUrl: string, controlPlaneUrl?: string): LabState {
  return {
    version: 1,
    labId: LAB,
    runtime: 'process',
    posture: controlPlaneUrl ? 'trusted' : 'paper',
    defences: defencesFor(controlPlaneUrl ? 'trusted' : 'paper'),
    startedAt: new Date().toISOString(),
    gatewayUrl: 'http://127.0.0.1:9',
    securityUrl,
    ...(controlPlaneUrl ? { controlPlaneUrl } : {}),
    parts: [],
  };
}

describe('the admin channel: where the CLI and the watchman send the lab token', () => {
  let home: string;
  let ca: LabCa;
  const servers: Server[] = [];
  const closers: (() => Promise<unknown>)[] = [];
  beforeEach(async () => {
    home = await mkdtemp(join(tmpdir(), 'tms-admin-channel-'));
    await mkdir(labDir(home), { recursive: true });
    await writeFile(join(labDir(home), 'lab-token'), `${TOKEN}\n`, { mode: 0o600 });
    ca = await createLabCa({ labId: LAB });
    await saveLabCa(ca, join(labDir(home), 'ca'));
  });
  afterEach(async () => {
    for (const s of servers.splice(0)) {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
    for (const c of closers.splice(0)) await c();
    await rm(home, { recursive: true, force: true });
  });

  /** The real security service of this lab: its plain port and its control-plane listener. */
  async function realSecurity() {
    const store = openLabStore(join(home, 'store-home'));
    const registry = new ServiceRegistry(store, 'measured');
    await registry.load();
    const revocations = new RevocationBook(store);
    await revocations.load();
    const signing = generateKeyPairSync('ed25519');
    const identity = await issueServiceCertificate(ca, { name: 'security', kind: 'security' });
    const { app, control } = buildSecurityApps(
      {
        labId: LAB,
        defences: defencesFor('trusted'),
        store,
        registry,
        revocations,
        signingKey: { kid: jwkThumbprint(signing.publicKey), privateKey: signing.privateKey },
        sealKey: Buffer.alloc(32, 3),
        labToken: TOKEN,
        ca,
        ticketTtlSeconds: 600,
        challengeTtlSeconds: 30,
      },
      serverTlsOptions(identity, ca.certPem),
    );
    if (!control) throw new Error('no control plane');
    await control.listen({ host: '127.0.0.1', port: 0 });
    await app.listen({ host: '127.0.0.1', port: 0 });
    closers.push(async () => {
      await Promise.all([app.close(), control.close()]);
      await store.close();
    });
    const portOf = (a: typeof app) => (a.server.address() as AddressInfo).port;
    return { controlUrl: `https://127.0.0.1:${portOf(control)}` };
  }

  it('trusted: user add goes to the control plane with an admin identity; a fake on the plain port gets nothing', async () => {
    const seen: IncomingHttpHeaders[] = [];
    const plainFake = await fake(seen);
    servers.push(plainFake.server);
    const real = await realSecurity();
    await writeLabState(home, stateOf(plainFake.url, real.controlUrl));

    const admin = await openUserAdmin(home);
    const added = await admin.addUser({ name: 'eve', role: 'admin', password: 'Eve-pass-123456!' });
    expect(added).toMatchObject({ name: 'eve', role: 'admin' });
    // nothing reached the plain fake: not the health probe, not the token, not the password
    expect(seen).toEqual([]);
  });

  it('trusted: a fake on the control-plane port (plain, or a lab-CA certificate of another kind) is sent nothing', async () => {
    const seen: IncomingHttpHeaders[] = [];
    const lookalike = await issueServiceCertificate(ca, { name: 'security', kind: 'service' });
    for (const f of [await fake(seen), await fake(seen, serverTlsOptions(lookalike, ca.certPem))]) {
      servers.push(f.server);
      const state = stateOf('http://127.0.0.1:9', f.url.replace(/^http:/, 'https:'));
      const channel = await adminChannel(home, state);
      expect(channel.tls).toBe(true);
      await expect(
        channel.call('/v1/admin/attestations', { body: { reports: [{ name: 'accounts', hash: 'x' }] } }),
      ).rejects.toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
    }
    expect(seen).toEqual([]);
  });

  it("trusted: service list and lab status read the attestation table from the proven service, never a fake's on the plain port", async () => {
    const seen: IncomingHttpHeaders[] = [];
    const plainFake = await fake(seen);
    servers.push(plainFake.server);
    const real = await realSecurity();
    const state = stateOf(plainFake.url, real.controlUrl);
    await writeLabState(home, state);
    // before: both read `${securityUrl}/v1/services`, where the red team's fake listed "evil" as trusted
    expect(await listServices(home)).toEqual([]);
    expect((await labStatus(home)).labId).toBe(LAB);
    expect(seen).toEqual([]);
  });

  it('an identity minted during a forward step of the wall clock is dropped once refused, and the next call gets in (red team: a 3 s blip of +2 h killed a trusted lab)', async () => {
    const real = await realSecurity();
    const state = stateOf('http://127.0.0.1:9', real.controlUrl);
    await writeLabState(home, state);
    // This process's wall clock (what the identity is dated by) ahead; OpenSSL at the security
    // service checks validity on the machine's real clock, as it did after the red team's step back.
    // Since certificates are back-dated a day (CERT_BACKDATE_MS) a step of 2 h is taken as it is, so
    // the step here is longer than that.
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() + CERT_BACKDATE_MS + 2 * 3_600_000);
    try {
      await expect((await adminChannel(home, state)).read('/v1/services')).rejects.toMatchObject({
        code: 'SERVICE_UNAVAILABLE',
      });
    } finally {
      vi.useRealTimers();
    }
    // Before: the refused identity was kept until its renewal time (on the stepped wall clock, two
    // hours away) and every call of the watchman failed with it.
    expect(await (await adminChannel(home, state)).read('/v1/services')).toMatchObject({ services: [] });
  });

  it('paper keeps the plain port, and an answer that is not one is never reported as done', async () => {
    const seen: IncomingHttpHeaders[] = [];
    const plainFake = await fake(seen);
    servers.push(plainFake.server);
    await writeLabState(home, stateOf(plainFake.url));

    expect((await adminChannel(home, stateOf(plainFake.url))).tls).toBe(false);
    const admin = await openUserAdmin(home);
    await expect(
      admin.addUser({ name: 'eve', role: 'admin', password: 'Eve-pass-123456!' }),
    ).rejects.toMatchObject({
      code: 'SERVICE_UNAVAILABLE',
      message: expect.stringContaining('name: string'),
    });
    const revocations = await openRevocationAdmin(home);
    await expect(revocations.revokeUser('victim')).rejects.toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
    expect(seen.some((h) => h.authorization === `Bearer ${TOKEN}`)).toBe(true);
  });
});
