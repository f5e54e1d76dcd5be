// Timing of lab up, login and a call on the process lab, 3 rounds per posture (not a test):
//   npm run build && npx tsx test/support/measure-lab.ts
import { callService } from '../../src/client/call.js';
import { startLab } from './lab.js';

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
for (const posture of ['none', 'paper', 'trusted'] as const) {
  const ups: number[] = [];
  const logins: number[] = [];
  const calls: number[] = [];
  for (let round = 0; round < 3; round++) {
    const t0 = performance.now();
    await using lab = await startLab(posture, 20);
    ups.push(performance.now() - t0);
    let session = await lab.login('alice');
    for (let i = 0; i < 10; i++) {
      const t = performance.now();
      session = await lab.login('alice');
      logins.push(performance.now() - t);
    }
    for (let i = 0; i < 100; i++) {
      const r = await callService(session, {
        gatewayUrl: lab.state.gatewayUrl,
        service: 'orders',
        path: '/db/orders/records/ord-1',
      });
      if (r.status !== 200) throw new Error(`call ${r.status}`);
      calls.push(r.durationMs);
    }
  }
  console.log(
    `${posture}: lab up (incl. users+keys) median ${(median(ups) / 1000).toFixed(1)} s; login median ${median(logins).toFixed(1)} ms; call median ${median(calls).toFixed(2)} ms (n=${calls.length})`,
  );
}
