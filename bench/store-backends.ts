/**
 * The two stores side by side, in this process: an update (read-modify-write of the document, one
 * counter) and an audit append, each awaited until durable, on the lab home's files (FileLabStore,
 * as the CLI opens it) and on a PostgreSQL server started here the way `lab up --store postgres`
 * starts one (fsync on). Interleaved operation by operation, so machine load hits both alike.
 * Numbers only. `npm run bench:store`; alone: `node dist/bench/store-backends.js [n]`.
 */

import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePorts } from '../src/lab/ports.js';
import type { Role } from '../src/policy/types.js';
import { FileLabStore } from '../src/store/file-lab-store.js';
import {
  clusterDirFor,
  initCluster,
  removeCluster,
  serverAccount,
  startCluster,
  stopCluster,
} from '../src/store/postgres/local-server.js';
import { PostgresLabStore } from '../src/store/postgres/postgres-lab-store.js';
import type { LabStore } from '../src/store/store.js';
import { median } from './micro.js';

const n = Number(process.argv[2] ?? 300);

const p99 = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * 0.99))] as number;
};

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

const increment = (store: LabStore) =>
  store.update((d) => {
    const role: Role = d.roles.counter ?? { name: 'counter', description: '0', grants: [] };
    role.description = String(Number(role.description) + 1);
    d.roles.counter = role;
  });

const dir = await mkdtemp(join(tmpdir(), 'tms-bench-store-'));
const account = serverAccount();
const clusterDir = clusterDirFor(dir, account);
try {
  const password = randomBytes(18).toString('base64url');
  await initCluster(clusterDir, account, 'trusted_ms', password);
  const [port] = (await freePorts(1)) as [number];
  await startCluster(clusterDir, account, port);
  const passwordFile = join(dir, 'postgres-password');
  await writeFile(passwordFile, password, { mode: 0o600 });
  const stores: Record<string, LabStore> = {
    lowdb: new FileLabStore(join(dir, 'home')),
    postgres: new PostgresLabStore(join(dir, 'home'), {
      url: `postgres://trusted_ms@127.0.0.1:${port}/postgres`,
      passwordFile,
    }),
  };
  const times: Record<string, { update: number[]; audit: number[] }> = {
    lowdb: { update: [], audit: [] },
    postgres: { update: [], audit: [] },
  };
  // Warm-up: the file's first write, the pool's connection and migrations.
  for (const s of Object.values(stores)) {
    await increment(s);
    await s.audit({ actor: 'bench', action: 'warm', outcome: 'ok' });
  }
  for (let i = 0; i < n; i++) {
    for (const [name, s] of Object.entries(stores)) {
      const t = times[name] as { update: number[]; audit: number[] };
      t.update.push(await timed(() => increment(s)));
      t.audit.push(await timed(() => s.audit({ actor: 'bench', action: `op.${i}`, outcome: 'ok' })));
    }
  }
  for (const s of Object.values(stores)) await s.close();
  console.log(`store            op       p50 ms   p99 ms   (n = ${n}, interleaved)`);
  for (const [name, t] of Object.entries(times)) {
    for (const op of ['update', 'audit'] as const) {
      console.log(
        `${name.padEnd(16)} ${op.padEnd(8)} ${median(t[op]).toFixed(2).padStart(6)}   ${p99(t[op]).toFixed(2).padStart(6)}`,
      );
    }
  }
} finally {
  await stopCluster(clusterDir, account, 'immediate').catch(() => false);
  await removeCluster(clusterDir);
  await rm(dir, { recursive: true, force: true });
}
