import { parentPort, workerData } from 'node:worker_threads';
import { type FloodJob, type FloodMessage, runFloodJob } from './flood.js';

// The attacker's thread (see floodInWorker): runs one bounded flood and reports what came back.
const post = (m: FloodMessage): void => parentPort?.postMessage(m);
try {
  const result = await runFloodJob(workerData as FloodJob, () => post({ event: 'started' }));
  post({ event: 'result', result });
} catch (err) {
  post({ event: 'failed', error: String((err as Error)?.message ?? err).slice(0, 200) });
}
