/**
 * The security service's share of a login, in this process through its real handlers
 * (fastify inject, no sockets), with the store read from disk on each step and the audit log
 * locked and read per entry (`LabStore` as the CLI opens it) against the resident store the service
 * opens while a lab runs. The two are interleaved login by login, so machine load hits both alike.
 * The password hash (tens of ms, on the thread pool) is left out by timing around it: the verify
 * step whole (no hash in it), and the challenge step's store work (the user read and its two audit
 * entries, in the order the handler does them). Their sum is the login's cost without the hash,
 * but for the challenge's own crypto and HTTP parsing (the same in both). Numbers only.
 * Part of `npm run bench:login`; alone: `node dist/bench/security-store.js`.
 */

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateUserKeyPair } from '../src/crypto/keys.js';
import { defencesFor } from '../src/defences/presets.js';
import { defaultRoles } from '../src/policy/roles.js';
import { type Challenge, signatureToWire, signChallenge } from '../src/protocol/challenge.js';
import { newExchangeKeyPair } from '../src/protocol/session-key.js';
import { buildSecurityService } from '../src/services/security/app.js';
import { ServiceRegistry } from '../src/services/security/registry.js';
import { FileLabStore } from '../src/store/file-lab-store.js';
import { addUser, addUserKey } from '../src/users/users.js';
import { median } from './micro.js';

export interface StoreVariantFigures {
  /** p50 ms of the verify step, whole */
  verifyMs: number;
  /** p50 ms of the challenge step's store work: read the user, two audit entries */
  challengeStoreMs: number;
  /** the two together */
  withoutHashMs: number;
}

export interface SecurityStoreFigures {
  logins: number;
  fromDisk: StoreVariantFigures;
  resident: StoreVariantFigures;
  /** fromDisk.withoutHashMs / resident.withoutHashMs */
  ratio: number;
}

export async function securityStoreFigures(logins: number): Promise<SecurityStoreFigures> {
  const base = await mkdtemp(join(tmpdir(), 'tms-bench-security-'));
  try {
    const key = await generateUserKeyPair('ed25519');
    const make = async (name: string, resident: boolean) => {
      const home = join(base, name);
      const setup = new FileLabStore(home, { seedRoles: defaultRoles });
      await addUser(setup, { name: 'alice', role: 'analyst', password: 'bench password' });
      await addUserKey(setup, 'alice', {
        thumbprint: key.thumbprint,
        type: 'ed25519',
        publicKeyPem: key.publicKeyPem,
        createdAt: new Date().toISOString(),
      });
      const store = new FileLabStore(home, { seedRoles: defaultRoles, resident });
      const registry = new ServiceRegistry(store, 'measured');
      await registry.load();
      const app = buildSecurityService({
        labId: 'bench',
        // Sequential logins from one address faster than a person types: the per-address login
        // limit would refuse most of them, and it is not what is measured here.
        defences: defencesFor('trusted', ['limits:on']),
        store,
        registry,
        signingKey: { kid: 'bench', privateKey: generateKeyPairSync('ed25519').privateKey },
        sealKey: randomBytes(32),
        labToken: randomBytes(16).toString('hex'),
        ticketTtlSeconds: 300,
        challengeTtlSeconds: 60,
      });
      await app.ready();
      return { app, store };
    };
    const variants = [await make('from-disk', false), await make('resident', true)];
    const step = async (
      v: (typeof variants)[number],
    ): Promise<{ verify: number; challengeStore: number }> => {
      const exchange = newExchangeKeyPair();
      const c = await v.app.inject({
        method: 'POST',
        url: '/v1/auth/challenge',
        payload: { user: 'alice', password: 'bench password', clientKey: exchange.publicKeyRaw },
      });
      if (c.statusCode !== 200) throw new Error(`challenge: ${c.statusCode} ${c.body}`);
      const challenge = c.json<Challenge>();
      const signature = signatureToWire(signChallenge(key.privateKey, challenge));
      const t0 = performance.now();
      const r = await v.app.inject({
        method: 'POST',
        url: '/v1/auth/verify',
        payload: { id: challenge.id, signature },
      });
      const verify = performance.now() - t0;
      if (r.statusCode !== 200) throw new Error(`verify: ${r.statusCode} ${r.body}`);
      const t1 = performance.now();
      await v.store.data();
      await v.store.audit({
        actor: '127.0.0.1',
        action: 'auth.password',
        target: 'alice',
        outcome: 'allowed',
      });
      await v.store.audit({ actor: '127.0.0.1', action: 'auth.challenge', target: 'alice', outcome: 'ok' });
      return { verify, challengeStore: performance.now() - t1 };
    };
    const verify: number[][] = [[], []];
    const challengeStore: number[][] = [[], []];
    for (let i = 0; i < logins + 5; i++) {
      // Alternating which goes first, so neither always follows the other.
      for (const j of i % 2 === 0 ? [0, 1] : [1, 0]) {
        const x = await step(variants[j] as (typeof variants)[number]);
        if (i >= 5) {
          verify[j]?.push(x.verify);
          challengeStore[j]?.push(x.challengeStore);
        }
      }
    }
    for (const v of variants) {
      await v.app.close();
      await v.store.close();
    }
    const figures = (j: number): StoreVariantFigures => {
      const v = median(verify[j] ?? []);
      const c = median(challengeStore[j] ?? []);
      return { verifyMs: v, challengeStoreMs: c, withoutHashMs: v + c };
    };
    const fromDisk = figures(0);
    const resident = figures(1);
    return { logins, fromDisk, resident, ratio: fromDisk.withoutHashMs / resident.withoutHashMs };
  } finally {
    await rm(base, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const f = await securityStoreFigures(Number(process.env.BENCH_LOGINS ?? 60));
  console.log(formatSecurityStoreFigures(f));
}

export function formatSecurityStoreFigures(f: SecurityStoreFigures): string {
  const one = (x: StoreVariantFigures): string =>
    `${x.withoutHashMs.toFixed(2)} ms (verify step ${x.verifyMs.toFixed(2)} + challenge's store work ${x.challengeStoreMs.toFixed(2)})`;
  return `security service per login without the hash (in-process, p50 of ${f.logins}, interleaved): store from disk per step ${one(f.fromDisk)}; resident ${one(f.resident)}; ${f.ratio.toFixed(1)}x`;
}
