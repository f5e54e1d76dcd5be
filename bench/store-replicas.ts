/**
 * The lab on each store side by side, in one run (issue 17): a trusted process lab on the lab home's
 * files with its one security service, then one on PostgreSQL with two security service replicas,
 * each under the same `lab load` (closed loop, every client logs in first, then calls through the
 * gateway). Numbers only: calls/s, and the logins' p50 / p99 and logins/s.
 * `npm run bench:store`; alone: `node dist/bench/store-replicas.js [clients] [seconds] [services]`.
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { labDown } from '../src/lab/down.js';
import type { StoreChoice } from '../src/lab/lab-store.js';
import { labUp } from '../src/lab/up.js';
import { labLoad } from '../src/load/lab-load.js';

const clients = Number(process.argv[2] ?? 50);
const seconds = Number(process.argv[3] ?? 10);
const services = Number(process.argv[4] ?? 5);

const LABS: { name: string; store: StoreChoice; securityReplicas: number }[] = [
  { name: 'lowdb, 1 security service', store: { kind: 'lowdb' }, securityReplicas: 1 },
  { name: 'postgres, 2 replicas', store: { kind: 'postgres' }, securityReplicas: 2 },
];

console.log(
  `trusted process labs of ${services} services, lab load: ${clients} clients, ${seconds} s closed loop`,
);
console.log('| lab | calls/s | call p50 / p99 ms | logins/s | login p50 / p99 ms | errors |');
console.log('| --- | --- | --- | --- | --- | --- |');
for (const lab of LABS) {
  const dir = await mkdtemp(join(tmpdir(), 'tms-bench-replicas-'));
  const home = join(dir, 'home');
  try {
    await labUp({
      home,
      posture: 'trusted',
      services,
      store: lab.store,
      securityReplicas: lab.securityReplicas,
    });
    const r = await labLoad({ home, clients, durationMs: seconds * 1000 });
    const errors =
      Object.values(r.errors).reduce((a, b) => a + b, 0) +
      Object.values(r.logins.errors).reduce((a, b) => a + b, 0);
    console.log(
      `| ${lab.name} | ${r.reqPerSec.toFixed(0)} | ${r.latencyMs.p50.toFixed(1)} / ${r.latencyMs.p99.toFixed(1)} | ${r.logins.perSecond.toFixed(1)} | ${r.logins.latencyMs.p50.toFixed(1)} / ${r.logins.latencyMs.p99.toFixed(1)} | ${errors} |`,
    );
  } finally {
    await labDown(home, undefined, { purge: true }).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}
