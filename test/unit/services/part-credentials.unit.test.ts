import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { jwkThumbprint } from '../../../src/crypto/thumbprint.js';
import { partCredentialStrategy, partsHoldLabToken } from '../../../src/defences/part-credentials.js';
import { defencesFor } from '../../../src/defences/presets.js';
import { jsonRequest } from '../../../src/kernel/http-client.js';
import { credentialDigest } from '../../../src/kernel/part-credential.js';
import { buildSecurityService } from '../../../src/services/security/app.js';
import { PartCredentials } from '../../../src/services/security/part-credentials.js';
import { ServiceRegistry } from '../../../src/services/security/registry.js';
import { RevocationBook } from '../../../src/services/security/revocations.js';
import { openLabStore } from '../../../src/store/open.js';
import { addUser } from '../../../src/users/users.js';

const TOKEN = 'lab-token-for-tests-0123456789';
const SECRETS = { gateway: 'gateway-secret-0123456789', orders: 'orders-secret-0123456789' } as const;

/** A paper security service; `credentials: false` is the baseline (none), where parts are who they say. */
async function start(opts: { credentials: boolean }) {
  const dir = await mkdtemp(join(tmpdir(), 'tms-cred-'));
  const store = openLabStore(join(dir, 'home'));
  await addUser(store, { name: 'bob', role: 'analyst', password: 'bob-pw' });
  const registry = new ServiceRegistry(store, 'self');
  await registry.load();
  await registry.register([
    { name: 'orders', hash: 'sha256:aa' },
    { name: 'catalog', hash: 'sha256:bb' },
  ]);
  const revocations = new RevocationBook(store);
  await revocations.load();
  const signing = generateKeyPairSync('ed25519');
  const app = buildSecurityService({
    labId: 'ab12cd34',
    defences: defencesFor(opts.credentials ? 'paper' : 'none'),
    store,
    registry,
    revocations,
    signingKey: { kid: jwkThumbprint(signing.publicKey), privateKey: signing.privateKey },
    sealKey: Buffer.alloc(32, 3),
    labToken: TOKEN,
    ...(opts.credentials
      ? {
          partCredentials: new PartCredentials({
            parts: Object.fromEntries(Object.entries(SECRETS).map(([p, s]) => [p, credentialDigest(s)])),
          }),
        }
      : {}),
    ticketTtlSeconds: 600,
    challengeTtlSeconds: 30,
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  return {
    url,
    registry,
    revocations,
    async [Symbol.asyncDispose]() {
      await app.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

describe('part credentials: which posture has them', () => {
  it('none declares, paper holds its own secrets, trusted its certificates (a secret without mTLS)', () => {
    expect(partCredentialStrategy(defencesFor('none'))).toBe('declared');
    expect(partCredentialStrategy(defencesFor('paper'))).toBe('secret');
    expect(partCredentialStrategy(defencesFor('trusted'))).toBe('certificate');
    expect(partCredentialStrategy(defencesFor('trusted', ['request:bound']))).toBe('certificate');
    expect(partCredentialStrategy(defencesFor('trusted', ['links:mtls']))).toBe('secret');
    expect(partsHoldLabToken(defencesFor('trusted'))).toBe(false);
    expect(partsHoldLabToken(defencesFor('paper'))).toBe(true);
  });

  it('names the part holding a credential, and nobody for anything else', () => {
    const creds = new PartCredentials({ parts: { orders: credentialDigest('s3cret') } });
    expect(creds.partOf('Bearer s3cret')).toBe('orders');
    expect(creds.partOf('Bearer s3cret ')).toBeUndefined();
    expect(creds.partOf('s3cret')).toBeUndefined();
    expect(creds.partOf(undefined)).toBeUndefined();
    expect(creds.partOf(`Bearer ${credentialDigest('s3cret')}`)).toBeUndefined();
  });
});

describe('a part credential at the security service (least privilege)', () => {
  it('reports its own measurement only', async () => {
    await using env = await start({ credentials: true });
    const r = await jsonRequest<{ state: string }>(`${env.url}/v1/services/orders/self-report`, {
      token: SECRETS.orders,
      body: { hash: 'sha256:aa' },
    });
    expect(r.state).toBe('trusted');
    // a bogus report on another service would mark it untrusted (issue 13, the paper break)
    await expect(
      jsonRequest(`${env.url}/v1/services/catalog/self-report`, {
        token: SECRETS.orders,
        body: { hash: 'sha256:00' },
      }),
    ).rejects.toMatchObject({ code: 'ACCESS_DENIED' });
    await expect(
      jsonRequest(`${env.url}/v1/services/catalog/self-report`, { body: { hash: 'sha256:00' } }),
    ).rejects.toMatchObject({ code: 'ADMIN_TOKEN_INVALID' });
    expect(env.registry.get('catalog')?.state).not.toBe('untrusted');
    // the CLI's lab token still reports any
    await expect(
      jsonRequest(`${env.url}/v1/services/catalog/self-report`, {
        token: TOKEN,
        body: { hash: 'sha256:bb' },
      }),
    ).resolves.toMatchObject({ state: 'trusted' });
  });

  it('opens no admin route', async () => {
    await using env = await start({ credentials: true });
    for (const secret of Object.values(SECRETS)) {
      await expect(
        jsonRequest(`${env.url}/v1/admin/users`, {
          token: secret,
          body: { name: 'mallory', role: 'admin', password: 'pw' },
        }),
      ).rejects.toMatchObject({ code: 'ADMIN_TOKEN_INVALID' });
      await expect(
        jsonRequest(`${env.url}/v1/admin/services/catalog/quarantine`, { token: secret, method: 'POST' }),
      ).rejects.toMatchObject({ code: 'ADMIN_TOKEN_INVALID' });
    }
    expect(env.revocations.quarantined('catalog')).toBe(false);
  });
});

/**
 * Holds a poll as the gateway (so a change waits for the gateway), then polls claiming the gateway
 * holds a far-future version, and revokes bob: how many confirmations the change counts.
 */
async function forgedConfirmation(env: Awaited<ReturnType<typeof start>>, heldWith?: string) {
  const version = env.revocations.list().version;
  const epoch = version.split('.')[0];
  const held = request(`${env.url}/v1/revocations?since=${encodeURIComponent(version)}&part=gateway`, {
    headers: heldWith ? { authorization: `Bearer ${heldWith}` } : {},
  });
  while (env.revocations.listening === 0) await new Promise((r) => setTimeout(r, 10));
  const forged = await request(`${env.url}/v1/revocations?since=${epoch}.999999&part=gateway`);
  await forged.body.dump();
  const r = await jsonRequest<{ propagation: { parts: number; confirmed: number } }>(
    `${env.url}/v1/admin/users/bob/revoke`,
    { token: TOKEN, method: 'POST' },
  );
  await (await held).body.dump();
  return r.propagation;
}

describe('confirmations of a revocation', () => {
  it('count only a poll made with the part credential of the part it names', async () => {
    await using env = await start({ credentials: true });
    // The real gateway listens (with its credential) but never confirms; the forgery does not count.
    expect(await forgedConfirmation(env, SECRETS.gateway)).toEqual(expect.objectContaining({ confirmed: 0 }));
  });

  it('a poll with its credential confirms', async () => {
    await using env = await start({ credentials: true });
    const version = env.revocations.list().version;
    const held = request(`${env.url}/v1/revocations?since=${encodeURIComponent(version)}&part=gateway`, {
      headers: { authorization: `Bearer ${SECRETS.gateway}` },
    });
    while (env.revocations.listening === 0) await new Promise((r) => setTimeout(r, 10));
    const revoke = jsonRequest<{ propagation: { parts: number; confirmed: number } }>(
      `${env.url}/v1/admin/users/bob/revoke`,
      { token: TOKEN, method: 'POST' },
    );
    const list = (await (await held).body.json()) as { version: string };
    // the gateway's next poll, from the version it now holds, is its confirmation
    const next = request(`${env.url}/v1/revocations?since=${encodeURIComponent(list.version)}&part=gateway`, {
      headers: { authorization: `Bearer ${SECRETS.gateway}` },
    });
    expect((await revoke).propagation).toMatchObject({ parts: 1, confirmed: 1 });
    env.revocations.releaseAll();
    await (await next).body.dump();
  });

  it("another part's credential does not confirm for the gateway", async () => {
    await using env = await start({ credentials: true });
    const version = env.revocations.list().version;
    const epoch = version.split('.')[0];
    const held = request(`${env.url}/v1/revocations?since=${encodeURIComponent(version)}&part=gateway`, {
      headers: { authorization: `Bearer ${SECRETS.gateway}` },
    });
    while (env.revocations.listening === 0) await new Promise((r) => setTimeout(r, 10));
    await (
      await request(`${env.url}/v1/revocations?since=${epoch}.999999&part=gateway`, {
        headers: { authorization: `Bearer ${SECRETS.orders}` },
      })
    ).body.dump();
    const r = await jsonRequest<{ propagation: { confirmed: number } }>(
      `${env.url}/v1/admin/users/bob/revoke`,
      {
        token: TOKEN,
        method: 'POST',
      },
    );
    await (await held).body.dump();
    expect(r.propagation.confirmed).toBe(0);
  });

  it('in the baseline (parts are who they say) the same forgery counts', async () => {
    await using env = await start({ credentials: false });
    expect(await forgedConfirmation(env)).toEqual({ parts: 1, confirmed: 1, ms: expect.any(Number) });
  });
});
