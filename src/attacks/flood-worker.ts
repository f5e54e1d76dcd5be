import { parentPort, workerData } from 'node:worker_threads';
import { type FloodJob, flood, recipeRequests } from './flood.js';

// The attacker's thread (see floodInWorker): runs one bounded flood and reports what came back.
const job = workerData as FloodJob;
try {
  const { recipe, ...opts } = job;
  const result = await flood({ ...opts, next: recipeRequests(recipe) });
  parentPort?.postMessage({ ok: true, result });
} catch (err) {
  parentPort?.postMessage({ ok: false, error: String((err as Error)?.message ?? err).slice(0, 200) });
}
