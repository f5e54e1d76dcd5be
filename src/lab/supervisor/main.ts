import { verifyServices } from '../attest.js';
import { readPartConfig } from '../part-config.js';

/**
 * The runtime's watchman: every interval it measures each service's code from outside and reports
 * to the security service, so code changed while the lab runs is caught without anyone asking.
 */
const config = readPartConfig('supervisor');
let running = false;

async function round(): Promise<void> {
  if (running) return;
  running = true;
  try {
    const { services, durationMs } = await verifyServices(config.home, 'all');
    const bad = services.filter((s) => s.state !== 'trusted').map((s) => s.name);
    console.log(
      `attested ${services.length} services in ${durationMs.toFixed(0)} ms${bad.length ? `; untrusted: ${bad.join(', ')}` : ''}`,
    );
  } catch (err) {
    console.log(`attestation round failed: ${(err as Error).message}`);
  } finally {
    running = false;
  }
}

const timer = setInterval(() => void round(), config.intervalSeconds * 1000);
console.log(`supervisor: re-attesting every ${config.intervalSeconds} s`);
const stop = (): void => {
  clearInterval(timer);
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
