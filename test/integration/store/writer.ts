/**
 * A child process for the store's concurrency tests: `node --import tsx writer.ts <home> <prefix> <mode> [n]`.
 *   count <n>  add users <prefix>-0 .. <prefix>-(n-1), one locked update each, then print a JSON summary
 *   loop       add users until killed; prints `ready` after the first update
 *   hold <n>   after n updates, print `holding` from inside an update and never let go of the lock
 *   audit <n>  append n audit entries, then exit
 */
import { FileLabStore } from '../../../src/store/file-lab-store.js';

const [home, prefix, mode, n] = process.argv.slice(2);
if (!home || !prefix || !mode) {
  console.error('usage: writer.ts <home> <prefix> count|loop|hold [n]');
  process.exit(2);
}
const store = new FileLabStore(home);
const count = Number(n ?? 0);

async function addOne(i: number, inside?: () => Promise<void>): Promise<void> {
  await store.update(async (data) => {
    const name = `${prefix}-${i}`;
    const at = new Date().toISOString();
    // Some bulk so that a write takes a moment and a kill can land in the middle of one.
    data.users[name] = { name, role: 'r', password: 'x'.repeat(200), keys: [], createdAt: at, updatedAt: at };
    if (inside) await inside();
  });
}

if (mode === 'count') {
  const times: number[] = [];
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    const t = performance.now();
    await addOne(i);
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  console.log(
    JSON.stringify({
      done: count,
      totalMs: performance.now() - started,
      medianMs: times[Math.floor(times.length / 2)],
    }),
  );
} else if (mode === 'loop') {
  for (let i = 0; ; i++) {
    await addOne(i);
    if (i === 0) console.log('ready');
  }
} else if (mode === 'hold') {
  for (let i = 0; ; i++) {
    await addOne(i, async () => {
      if (i === count) {
        console.log('holding');
        await new Promise(() => setInterval(() => undefined, 60_000));
      }
    });
  }
} else if (mode === 'audit') {
  for (let i = 0; i < count; i++) await store.audit({ actor: prefix, action: `test.${i}`, outcome: 'ok' });
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
