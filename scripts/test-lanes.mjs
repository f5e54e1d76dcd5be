#!/usr/bin/env node
// `npm test`'s run of the suite, in two lanes at once: the tiers in turn (unit, process labs, Docker
// labs: vitest.config.ts) and, beside them, the process-lab files that spend their time waiting on
// the clock rather than the cores (the `integration-waiting` project). One vitest run cannot do it:
// projects run together only when they share one worker limit, and on 2 cores that would put any
// two busy labs side by side. The second lane's report is printed after the first's; the exit code
// is the first failure's.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const vitest = join(dirname(createRequire(import.meta.url).resolve('vitest/package.json')), 'vitest.mjs');

function run(projects, stdio) {
  const args = ['run', ...projects.flatMap((p) => ['--project', p])];
  const child = spawn(process.execPath, [vitest, ...args], { stdio });
  const out = [];
  if (stdio !== 'inherit') {
    child.stdout.on('data', (c) => out.push(c));
    child.stderr.on('data', (c) => out.push(c));
  }
  return new Promise((resolve) => {
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 1 : 0), out }));
  });
}

// With arguments (`npm test -- <filter>`), one plain vitest run of what they select.
if (process.argv.length > 2) {
  const child = spawn(process.execPath, [vitest, 'run', ...process.argv.slice(2)], { stdio: 'inherit' });
  child.on('close', (code) => process.exit(code ?? 1));
} else {
  await lanes();
}

async function lanes() {
  const waiting = run(['integration-waiting'], ['ignore', 'pipe', 'pipe']);
  const tiers = await run(['unit', 'integration', 'e2e'], 'inherit');
  process.stdout.write('\n== the waiting lane (integration-waiting), run beside the tiers above\n');
  const side = await waiting;
  process.stdout.write(Buffer.concat(side.out));
  process.exit(tiers.code || side.code);
}
