import { emit, readProgramInput } from '../lab/program-io.js';
import { type FloodJob, type FloodMessage, runFloodJob } from './flood.js';

// The attacker's container on a Docker lab (flood-container.ts): the same bounded flood as the
// worker thread of a process lab, sent from the container's own address on the lab's edge network.
const report = (m: FloodMessage): void => emit(m);
try {
  const job = readProgramInput<FloodJob>();
  const result = await runFloodJob({ ...job, source: 'network' }, () => report({ event: 'started' }));
  report({ event: 'result', result });
} catch (err) {
  report({ event: 'failed', error: String((err as Error)?.message ?? err).slice(0, 200) });
  process.exitCode = 1;
}
