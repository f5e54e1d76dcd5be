import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { login } from '../../../src/client/login.js';
import { generateUserKeyPair } from '../../../src/crypto/keys.js';
import { paperEncrypt } from '../../../src/crypto/paper-scheme.js';
import { jwkThumbprint } from '../../../src/crypto/thumbprint.js';
import type { Posture } from '../../../src/defences/posture.js';
import { defencesFor } from '../../../src/defences/presets.js';
import { CLIENT_ADDRESS_HEADER } from '../../../src/kernel/client-address.js';
import { jsonRequest } from '../../../src/kernel/http-client.js';
import { createLabCa } from '../../../src/pki/ca.js';
import { type Challenge, signatureToWire, signChallenge } from '../../../src/protocol/challenge.js';
import { deriveSessionKey, newExchangeKeyPair, openSessionKey } from '../../../src/protocol/session-key.js';
import { TicketVerifier } from '../../../src/protocol/ticket.js';
import {
  buildSecurityService,
  labAudience,
  labIssuer,
  type SecurityDeps,
} from '../../../src/services/security/app.js';
import { ServiceRegistry } from '../../../src/services/security/registry.js';
import { openLabStore } from '../../../src/store/open.js';
import { addUser, addUserKey } from '../../../src/users/users.js';

const LAB = 'ab12cd34';
const TOKEN = 'lab-token-for-tests-0123456789';

interface Env extends AsyncDisposable {
  url: string;
  app: FastifyInstance;
  sealKey: Buffer;
  verifier: TicketVerifier;
  keys: Record<string, Awaited<ReturnType<typeof generateUserKeyPair>>>;
}

async function start(posture: Posture, extra: Partial<SecurityDeps> = {}): Promise<Env> {
  const dir = await mkdtemp(join(tmpdir(), 'tms-sec-'));
  const store = openLabStore(join(dir, 'home'));
  const keys = {
    alice: await generateUserKeyPair('ed25519'),
    bob: await generateUserKeyPair('rsa', 2048),
  };
  await addUser(store, { name: 'alice', role: 'admin', password: 'alice-pw' });
  await addUser(store, { name: 'bob', role: 'analyst', password: 'bob-pw' });
  for (const [name, k] of Object.entries(keys)) {
    await addUserKey(store, name, {
      thumbprint: k.thumbprint,
      type: k.type,
      publicKeyPem: k.publicKeyPem,
      createdAt: new Date().toISOString(),
    });
  }
  const registry = new ServiceRegistry(store, defencesFor(posture).attestation);
  await registry.load();
  const signing = generateKeyPairSync('ed25519');
  const sealKey = Buffer.alloc(32, 3);
  const app = buildSecurityService({
    labId: LAB,
    defences: defencesFor(posture),
    store,
    registry,
    signingKey: { kid: jwkThumbprint(signing.publicKey), privateKey: signing.privateKey },
    sealKey,
    labToken: TOKEN,
    ...(posture === 'trusted' ? { ca: await createLabCa({ labId: LAB }) } : {}),
    ticketTtlSeconds: 600,
    challengeTtlSeconds: 30,
    ...extra,
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address() as { port: number };
  const verifier = new TicketVerifier({
    keys: new Map([[jwkThumbprint(signing.publicKey), signing.publicKey]]),
    issuer: labIssuer(LAB),
    audience: labAudience(LAB),
  });
  return {
    url: `http://127.0.0.1:${address.port}`,
    app,
    sealKey,
    verifier,
    keys,
    async [Symbol.asyncDispose]() {
      await app.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

describe('security service, trusted posture', () => {
  let env: Env;
  beforeEach(async () => {
    env = await start('trusted');
  });
  afterEach(async () => {
    await env[Symbol.asyncDispose]();
  });

  const challenge = (user: string, password: string, clientKey: string) =>
    jsonRequest<Challenge>(`${env.url}/v1/auth/challenge`, { body: { user, password, clientKey } });

  it('issues a key-bound ticket and a session key both sides derive alike', async () => {
    const x = newExchangeKeyPair();
    const c = await challenge('alice', 'alice-pw', x.publicKeyRaw);
    expect(c).toMatchObject({ user: 'alice', audience: labIssuer(LAB), clientKey: x.publicKeyRaw });
    const sig = signatureToWire(signChallenge(env.keys.alice!.privateKey, c));
    const v = await jsonRequest<{ ticket: string; serverKey: string; thumbprint: string }>(
      `${env.url}/v1/auth/verify`,
      {
        body: { id: c.id, signature: sig },
      },
    );
    const claims = env.verifier.verify(v.ticket);
    expect(claims).toMatchObject({ sub: 'alice', role: 'admin', posture: 'trusted' });
    expect(claims.cnf?.jkt).toBe(env.keys.alice!.thumbprint);
    const mine = deriveSessionKey(x.privateKey, v.serverKey, c.id);
    expect(openSessionKey(env.sealKey, claims.cnf!.sk, claims.jti).equals(mine)).toBe(true);
    // one use only
    await expect(
      jsonRequest(`${env.url}/v1/auth/verify`, { body: { id: c.id, signature: sig } }),
    ).rejects.toMatchObject({ code: 'CHALLENGE_UNKNOWN' });
  });

  it('refuses a signature by another key, and the challenge is gone after the failure', async () => {
    const x = newExchangeKeyPair();
    const c = await challenge('bob', 'bob-pw', x.publicKeyRaw);
    const wrong = signatureToWire(signChallenge(env.keys.alice!.privateKey, c));
    await expect(
      jsonRequest(`${env.url}/v1/auth/verify`, { body: { id: c.id, signature: wrong } }),
    ).rejects.toMatchObject({
      code: 'SIGNATURE_INVALID',
    });
    const right = signatureToWire(signChallenge(env.keys.bob!.privateKey, c));
    await expect(
      jsonRequest(`${env.url}/v1/auth/verify`, { body: { id: c.id, signature: right } }),
    ).rejects.toMatchObject({
      code: 'CHALLENGE_UNKNOWN',
    });
  });

  /**
   * A stand-in for the gateway in front of a replica that took the challenge and died before it
   * answered (a fault that cannot be timed for real): the first `drops` verify steps reach the
   * service, which takes the challenge, but their answers are lost and the step is sent again, as
   * the gateway's failover does; that second answer (CHALLENGE_UNKNOWN) goes to the client.
   */
  async function lossyGateway(drops: number) {
    const seen = { challenges: 0, verifies: 0 };
    const server = createServer(async (req, res) => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
      const send = () =>
        jsonRequest(`${env.url}${req.url}`, { body }).then(
          (v) => ({ status: 200, v }),
          (err: { status?: number; code?: string; message?: string }) => ({
            status: err.status ?? 500,
            v: { code: err.code, message: err.message },
          }),
        );
      if (req.url === '/v1/auth/verify') {
        seen.verifies += 1;
        if (drops > 0) {
          drops -= 1;
          await send();
          seen.verifies += 1;
        }
      } else seen.challenges += 1;
      const { status, v } = await send();
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(v));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const lab = {
      labId: LAB,
      posture: 'trusted' as const,
      defences: defencesFor('trusted'),
      gatewayUrl: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    };
    return { seen, lab, [Symbol.asyncDispose]: () => new Promise<void>((r) => server.close(() => r())) };
  }

  it('a login whose challenge was taken by a replica that died before answering starts again, once', async () => {
    await using gw = await lossyGateway(1);
    const { session } = await login(gw.lab, 'alice', 'alice-pw', env.keys.alice!.privateKey);
    expect(env.verifier.verify(session.ticket as string)).toMatchObject({ sub: 'alice' });
    // the first challenge taken and its answer lost, the step sent again and refused; a new challenge
    expect(gw.seen).toEqual({ challenges: 2, verifies: 3 });
  });

  it('starts again only once: a second refusal is the answer', async () => {
    await using gw = await lossyGateway(2);
    await expect(login(gw.lab, 'alice', 'alice-pw', env.keys.alice!.privateKey)).rejects.toMatchObject({
      code: 'CHALLENGE_UNKNOWN',
    });
    expect(gw.seen).toEqual({ challenges: 2, verifies: 4 });
  });

  it('refuses a wrong password, an unknown user alike, and locks after five failures', async () => {
    const x = newExchangeKeyPair().publicKeyRaw;
    await expect(challenge('alice', 'nope', x)).rejects.toMatchObject({ code: 'AUTH_FAILED' });
    await expect(challenge('nobody', 'nope', x)).rejects.toMatchObject({ code: 'AUTH_FAILED' });
    for (let i = 0; i < 5; i++)
      await expect(challenge('bob', 'nope', x)).rejects.toMatchObject({ code: 'AUTH_FAILED' });
    await expect(challenge('bob', 'bob-pw', x)).rejects.toMatchObject({ code: 'ACCOUNT_LOCKED' });
  });

  it('needs the lab token for the admin API', async () => {
    await expect(
      jsonRequest(`${env.url}/v1/admin/services/register`, { body: { services: [] } }),
    ).rejects.toMatchObject({
      code: 'ADMIN_TOKEN_INVALID',
    });
    await expect(
      jsonRequest(`${env.url}/v1/admin/services/register`, { token: 'wrong', body: { services: [] } }),
    ).rejects.toMatchObject({ code: 'ADMIN_TOKEN_INVALID' });
  });

  it('marks a measured service trusted or untrusted and issues identities only to trusted ones', async () => {
    await jsonRequest(`${env.url}/v1/admin/services/register`, {
      token: TOKEN,
      body: {
        services: [
          { name: 'orders', hash: 'sha256:aa' },
          { name: 'catalog', hash: 'sha256:bb' },
        ],
      },
    });
    const r = await jsonRequest<{
      services: { name: string; state: string }[];
      identities: Record<string, unknown>;
    }>(`${env.url}/v1/admin/attestations`, {
      token: TOKEN,
      body: {
        reports: [
          { name: 'orders', hash: 'sha256:aa' },
          { name: 'catalog', hash: 'sha256:XX' },
        ],
        issueIdentity: true,
      },
    });
    expect(r.services).toEqual([
      expect.objectContaining({ name: 'orders', state: 'trusted' }),
      expect.objectContaining({ name: 'catalog', state: 'untrusted' }),
    ]);
    expect(Object.keys(r.identities)).toEqual(['orders']);
    await expect(
      jsonRequest(`${env.url}/v1/admin/services/catalog/identity`, { token: TOKEN, method: 'POST' }),
    ).rejects.toMatchObject({
      code: 'ATTESTATION_MISMATCH',
    });
    // Regression (fuzz suite): these were 503 SERVICE_UNTRUSTED, a 5xx for a caller's mistake.
    await expect(
      jsonRequest(`${env.url}/v1/admin/services/nobody/identity`, { token: TOKEN, method: 'POST' }),
    ).rejects.toMatchObject({ code: 'SERVICE_NOT_FOUND' });
    // A service cannot vouch for itself here: only outside measurements count.
    await expect(
      jsonRequest(`${env.url}/v1/services/catalog/self-report`, {
        token: TOKEN,
        body: { hash: 'sha256:bb' },
      }),
    ).rejects.toMatchObject({ code: 'POSTURE_MISMATCH' });
    const listed = await jsonRequest<{ services: { name: string; state: string }[] }>(
      `${env.url}/v1/services`,
    );
    expect(listed.services.map((s) => `${s.name}:${s.state}`)).toEqual([
      'catalog:untrusted',
      'orders:trusted',
    ]);
  });

  it('drops a measurement of a start that a restart replaced, delivered after the restart was reported', async () => {
    await jsonRequest(`${env.url}/v1/admin/services/register`, {
      token: TOKEN,
      body: { services: [{ name: 'orders', hash: 'sha256:aa' }] },
    });
    const report = (hash: string, launch?: string, ends?: string) =>
      jsonRequest<{ services: { name: string; state: string; late?: boolean }[] }>(
        `${env.url}/v1/admin/attestations`,
        {
          token: TOKEN,
          body: {
            reports: [{ name: 'orders', hash, ...(launch ? { launch } : {}), ...(ends ? { ends } : {}) }],
          },
        },
      );
    // Start 1 was never reported (lab up registers, the first round comes later); the restart's
    // own report of start 2, the tampered code, names the start it replaced...
    expect((await report('sha256:XX', 'start-2', 'start-1')).services[0]).toMatchObject({
      state: 'untrusted',
    });
    // ...then a watchman round's measurement of start 1, taken before the restart, arrives.
    const late = (await report('sha256:aa', 'start-1')).services[0];
    expect(late).toMatchObject({ state: 'untrusted', late: true });
    // The current start's own measurements still count, either way.
    expect((await report('sha256:aa', 'start-2')).services[0]).toMatchObject({ state: 'trusted' });
    expect((await report('sha256:XX', 'start-2')).services[0]).toMatchObject({ state: 'untrusted' });
    // A report of another start that no restart ended is taken (it cannot end the current one).
    expect((await report('sha256:aa', 'start-9')).services[0]).toMatchObject({ state: 'trusted' });
    expect((await report('sha256:XX', 'start-2')).services[0]).toMatchObject({ state: 'untrusted' });
    // Nor does a registration forget what ended; a report naming no start is taken as before.
    await jsonRequest(`${env.url}/v1/admin/services/register`, {
      token: TOKEN,
      body: { services: [{ name: 'orders', hash: 'sha256:aa' }] },
    });
    expect((await report('sha256:XX', 'start-1')).services[0]).toMatchObject({ late: true });
    expect((await report('sha256:aa')).services[0]).toMatchObject({ state: 'trusted' });
  });

  it('answers malformed bodies with 400 and a code', async () => {
    for (const body of [
      {},
      { user: 'alice' },
      { user: 'alice', password: 'x', extra: 1 },
      { user: 'alice', password: 'x' },
    ]) {
      await expect(jsonRequest(`${env.url}/v1/auth/challenge`, { body })).rejects.toMatchObject({
        code: 'INVALID_INPUT',
      });
    }
    await expect(
      jsonRequest(`${env.url}/v1/auth/verify`, { body: { id: 'abc', signature: 'a+b' } }),
    ).rejects.toMatchObject({
      code: 'INVALID_INPUT',
    });
    await expect(jsonRequest(`${env.url}/v1/nope`)).rejects.toMatchObject({ code: 'ROUTE_NOT_FOUND' });
  });
});

/** Login attempts as the gateway relays them: maybe with the lab token and the real client's address. */
async function loginCodes(
  url: string,
  attempts: { user: string; password: string; client?: string; token?: string }[],
): Promise<string[]> {
  const clientKey = newExchangeKeyPair().publicKeyRaw;
  const results = await Promise.allSettled(
    attempts.map((a) =>
      jsonRequest(`${url}/v1/auth/challenge`, {
        body: { user: a.user, password: a.password, clientKey },
        ...(a.token === undefined ? {} : { token: a.token }),
        ...(a.client === undefined ? {} : { headers: { [CLIENT_ADDRESS_HEADER]: a.client } }),
      }),
    ),
  );
  return results.map((r) =>
    r.status === 'fulfilled' ? 'OK' : String((r.reason as { code?: unknown }).code),
  );
}

const count = (codes: string[], code: string) => codes.filter((c) => c === code).length;

describe('security service, per-client login limit (20/s, burst 40) behind the gateway', () => {
  // A frozen clock: no token comes back during the test, so the counts are exact.
  const frozen = Date.now();

  it('counts the client the gateway names: a flood from 127.0.0.2 leaves 127.0.0.1 able to log in', async () => {
    await using env = await start('trusted', { now: () => frozen });
    const flood = Array.from({ length: 50 }, (_, i) => ({
      user: `nobody-${i}`,
      password: 'wrong',
      client: '127.0.0.2',
      token: TOKEN,
    }));
    const codes = await loginCodes(env.url, flood);
    expect([count(codes, 'AUTH_FAILED'), count(codes, 'RATE_LIMITED')]).toEqual([40, 10]);
    // Same socket (this test is "the gateway"), another client: not refused.
    expect(
      await loginCodes(env.url, [{ user: 'alice', password: 'alice-pw', client: '127.0.0.1', token: TOKEN }]),
    ).toEqual(['OK']);
  });

  it('ignores the header without the lab token: rotating claimed addresses do not escape the limit', async () => {
    await using env = await start('trusted', { now: () => frozen });
    const flood = Array.from({ length: 50 }, (_, i) => ({
      user: `nobody-${i}`,
      password: 'wrong',
      client: `127.0.1.${i}`,
    }));
    const codes = await loginCodes(env.url, flood);
    expect([count(codes, 'AUTH_FAILED'), count(codes, 'RATE_LIMITED')]).toEqual([40, 10]);
    // a wrong token is no token
    const more = await loginCodes(env.url, [
      { user: 'alice', password: 'alice-pw', client: '127.0.2.1', token: 'not-the-lab-token' },
    ]);
    expect(more).toEqual(['RATE_LIMITED']);
  });

  it('has no limit in the paper posture, whose scheme has none', async () => {
    await using env = await start('paper', { now: () => frozen });
    const codes = await loginCodes(
      env.url,
      Array.from({ length: 42 }, (_, i) => ({ user: `nobody-${i}`, password: 'wrong' })),
    );
    expect(count(codes, 'AUTH_FAILED')).toBe(42);
  });
});

describe('security service, paper posture', () => {
  it("logs in with the paper's scheme: the ticket encrypted with the private key", async () => {
    await using env = await start('paper');
    const c = await jsonRequest<{ id: string; ticket: string }>(`${env.url}/v1/auth/challenge`, {
      body: { user: 'bob', password: 'bob-pw' },
    });
    const enc = paperEncrypt(env.keys.bob!.privateKey, Buffer.from(c.ticket, 'base64url'));
    const v = await jsonRequest<{ ticket: string }>(`${env.url}/v1/auth/verify`, {
      body: { id: c.id, signature: enc.toString('base64url') },
    });
    const claims = env.verifier.verify(v.ticket);
    expect(claims).toMatchObject({ sub: 'bob', role: 'analyst', posture: 'paper' });
    expect(claims.cnf).toBeUndefined();
  });

  it('accepts a self-reported hash: the paper trusts the service to tell the truth', async () => {
    await using env = await start('paper');
    await jsonRequest(`${env.url}/v1/admin/services/register`, {
      token: TOKEN,
      body: { services: [{ name: 'orders', hash: 'sha256:aa' }] },
    });
    const r = await jsonRequest<{ state: string }>(`${env.url}/v1/services/orders/self-report`, {
      token: TOKEN,
      body: { hash: 'sha256:aa' },
    });
    expect(r.state).toBe('trusted');
  });

  it('refuses users without an RSA key, which the scheme needs', async () => {
    await using env = await start('paper');
    await expect(
      jsonRequest(`${env.url}/v1/auth/challenge`, { body: { user: 'alice', password: 'alice-pw' } }),
    ).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
  });
});
