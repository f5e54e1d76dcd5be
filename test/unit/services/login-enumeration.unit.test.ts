import { generateKeyPairSync, randomInt } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compareTimings, median, probabilityFaster } from '../../../src/attacks/timing.js';
import { jwkThumbprint } from '../../../src/crypto/thumbprint.js';
import { defencesFor } from '../../../src/defences/presets.js';
import { CLIENT_ADDRESS_HEADER } from '../../../src/kernel/client-address.js';
import { newExchangeKeyPair } from '../../../src/protocol/session-key.js';
import { buildSecurityService } from '../../../src/services/security/app.js';
import { ServiceRegistry } from '../../../src/services/security/registry.js';
import { openLabStore } from '../../../src/store/open.js';
import { addUser, importHtpasswd } from '../../../src/users/users.js';

const TOKEN = 'lab-token-for-tests-0123456789';
/** Rounds of one try per kind, shuffled: the statistics need ~16 or more per kind (src/attacks/timing.ts). */
const ROUNDS = 24;
const KINDS = ['unknown', 'scrypt', 'bcrypt'] as const;
type Kind = (typeof KINDS)[number];
const NAMES: Record<Kind, string> = { unknown: 'nobody-here', scrypt: 'alice', bcrypt: 'carol' };

interface Answer {
  status: number;
  body: string;
  ms: number;
}

/**
 * A security service with a scrypt user and an imported, not yet upgraded, bcrypt user (the
 * htpasswd fixture, cost 5), its logins sent as the gateway sends them: with the lab token and the
 * client's address, a fresh address per round so that no limit engages and the password check
 * itself is what is timed.
 */
async function start(limits: 'on' | 'off') {
  const dir = await mkdtemp(join(tmpdir(), 'tms-enum-'));
  const store = openLabStore(join(dir, 'home'), { resident: true });
  await addUser(store, { name: 'alice', role: 'admin', password: 'alice-pw' });
  const htpasswd = await readFile(
    new URL('../../../fixtures/htpasswd/bcrypt.htpasswd', import.meta.url),
    'utf8',
  );
  await importHtpasswd(store, htpasswd, 'analyst');
  const registry = new ServiceRegistry(store, 'measured');
  await registry.load();
  const signing = generateKeyPairSync('ed25519');
  const app: FastifyInstance = buildSecurityService({
    labId: 'ab12cd34',
    defences: { ...defencesFor('trusted'), limits },
    store,
    registry,
    signingKey: { kid: jwkThumbprint(signing.publicKey), privateKey: signing.privateKey },
    sealKey: Buffer.alloc(32, 3),
    labToken: TOKEN,
    ticketTtlSeconds: 600,
    challengeTtlSeconds: 30,
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  const tryPassword = async (user: string, from: string): Promise<Answer> => {
    const t0 = performance.now();
    const res = await request(`${url}/v1/auth/challenge`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${TOKEN}`,
        [CLIENT_ADDRESS_HEADER]: from,
      },
      body: JSON.stringify({
        user,
        password: 'not-the-password',
        clientKey: newExchangeKeyPair().publicKeyRaw,
      }),
    });
    const body = await res.body.text();
    return { status: res.statusCode, body, ms: performance.now() - t0 };
  };
  /** ROUNDS shuffled rounds of one wrong password per kind, each round from its own address. */
  const sample = async (): Promise<Record<Kind, Answer[]>> => {
    const out: Record<Kind, Answer[]> = { unknown: [], scrypt: [], bcrypt: [] };
    // One round first, not counted: the first calls pay for warming up (JIT, connections).
    for (const k of KINDS) await tryPassword(NAMES[k], '10.9.0.1');
    for (let round = 0; round < ROUNDS; round++) {
      const order: Kind[] = [...KINDS];
      for (let i = order.length - 1; i > 0; i--) {
        const j = randomInt(i + 1);
        [order[i], order[j]] = [order[j] as Kind, order[i] as Kind];
      }
      for (const k of order) out[k].push(await tryPassword(NAMES[k], `10.9.1.${round + 1}`));
    }
    return out;
  };
  return {
    tryPassword,
    sample,
    async close() {
      await app.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

const times = (answers: Answer[]) => answers.map((a) => a.ms);
const summary = (s: Record<Kind, Answer[]>) =>
  KINDS.map((k) => `${k} median ${median(times(s[k])).toFixed(1)} ms`).join(', ');

describe('no user enumeration at the security service (limits:on)', () => {
  let lab: Awaited<ReturnType<typeof start>>;
  beforeAll(async () => {
    lab = await start('on');
  });
  afterAll(async () => {
    await lab?.close();
  });

  it('answers an unknown, a scrypt and an imported bcrypt user alike: same body, timing within noise', async () => {
    const s = await lab.sample();
    console.log(`limits:on: ${summary(s)}`);
    for (const k of KINDS) {
      expect(new Set(s[k].map((a) => `${a.status} ${a.body}`)), k).toEqual(
        new Set([`401 ${JSON.stringify({ code: 'AUTH_FAILED', message: 'authentication failed' })}`]),
      );
    }
    // Rank-based and interleaved: a busy machine slows every kind alike (src/attacks/timing.ts).
    for (const k of ['scrypt', 'bcrypt'] as const) {
      const p = probabilityFaster(times(s[k]), times(s.unknown));
      expect(
        compareTimings(times(s[k]), times(s.unknown)),
        `${k}: P(faster than unknown) ${p.toFixed(2)}`,
      ).not.toBe('different');
      expect(p, k).toBeGreaterThan(0.15);
      expect(p, k).toBeLessThan(0.85);
    }
  }, 120_000);

  it('gives a locked-out user and a made-up name the same answer after the same failures', async () => {
    const answers: Record<string, Answer[]> = {};
    for (const [user, from] of [
      ['carol', '10.9.2.1'],
      ['made-up-name', '10.9.2.2'],
    ] as const) {
      answers[user] = [];
      for (let i = 0; i < 7; i++) answers[user].push(await lab.tryPassword(user, from));
    }
    const shape = (a: Answer) => `${a.status} ${a.body}`;
    expect(answers.carol?.map(shape)).toEqual(answers['made-up-name']?.map(shape));
    expect(answers.carol?.map((a) => a.status)).toEqual([401, 401, 401, 401, 401, 423, 423]);
  }, 60_000);
});

describe('the same measurement without the defence (limits:off) finds the leak', () => {
  it('tells the imported bcrypt user from an unknown one by time alone', async () => {
    const lab = await start('off');
    try {
      const s = await lab.sample();
      console.log(`limits:off: ${summary(s)}`);
      expect(compareTimings(times(s.bcrypt), times(s.unknown))).toBe('different');
    } finally {
      await lab.close();
    }
  }, 120_000);
});
