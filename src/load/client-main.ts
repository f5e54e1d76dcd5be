import { createPrivateKey } from 'node:crypto';
import { createInterface } from 'node:readline';
import { assertOwnNetwork } from '../attacks/http.js';
import { edgeConnectOptions } from '../kernel/edge-client.js';
import { emit, readProgramInput } from '../lab/program-io.js';
import type { ClientJob, ClientMessage } from './client-job.js';
import { encodeHistogram } from './histogram.js';
import { closeClients, loginAll, openClients, sendRequests } from './run.js';

// One load client of `lab load --client-containers`, in a container of its own on the lab's edge
// network: its own user logs in with the full handshake when the host says so, says it is ready,
// waits for the host's go
// (so that every client sends over the same window), sends the mix for the duration, and reports
// its figures with its HDR histograms for the host to merge. The same code as `lab load` on the host.
const report = (m: ClientMessage): void => emit(m);

const stdin = createInterface({ input: process.stdin });
const heard: string[] = [];
let wake: (() => void) | undefined;
stdin.on('line', (line) => {
  heard.push(line.trim());
  wake?.();
});

/** The host's `word` on stdin (login, go), or false when none comes in time (then it stops). */
async function hear(word: string, withinMs: number): Promise<boolean> {
  const until = Date.now() + withinMs;
  while (!heard.includes(word)) {
    const left = until - Date.now();
    if (left <= 0) return false;
    await new Promise<void>((r) => {
      wake = r;
      setTimeout(r, left).unref();
    });
  }
  return true;
}

try {
  const job = readProgramInput<ClientJob>();
  const origin = assertOwnNetwork(job.origin).url.origin;
  const lab = { labId: job.labId, posture: job.posture, defences: job.defences, gatewayUrl: origin };
  const users = [{ ...job.user, privateKey: createPrivateKey(job.user.privateKeyPem) }];
  const clients = openClients(
    origin,
    1,
    job.timeoutMs,
    false,
    // the gateway's certificate names it `gateway` (its part name), not this network's address
    job.edgeCaPem === undefined ? undefined : edgeConnectOptions(job.edgeCaPem, 'gateway'),
  );
  try {
    // The host lets a few clients log in at a time, as `lab load` does from one process: a fleet
    // all logging in at once on 2 cores keeps every password check past the gateway's limit.
    if (!(await hear('login', job.goWithinMs))) throw new Error('no login turn from the host in time');
    const login = await loginAll({ lab, users, loginRetryMs: job.loginRetryMs }, clients);
    report({ event: 'ready', loggedIn: login.sessions[0] !== undefined });
    if (!(await hear('go', job.goWithinMs))) throw new Error('no go from the host in time');
    const { histogram, serviceHistograms, ...figures } = await sendRequests(
      {
        users,
        roles: job.roles,
        services: job.services,
        mix: job.mix,
        durationMs: job.durationMs,
        onProgress: (p) => report({ event: 'progress', done: p.done, errors: p.errors }),
        ...(job.rate === undefined ? {} : { rate: job.rate }),
        ...(job.timeoutMs === undefined ? {} : { timeoutMs: job.timeoutMs }),
      },
      clients,
      login.sessions,
    );
    report({
      event: 'result',
      figures,
      logins: login.logins,
      histogram: encodeHistogram(histogram),
      loginHistogram: encodeHistogram(login.histogram),
      serviceHistograms: Object.fromEntries(
        Object.entries(serviceHistograms).map(([name, h]) => [name, encodeHistogram(h)]),
      ),
    });
  } finally {
    await closeClients(clients);
  }
  process.exit(0);
} catch (err) {
  report({ event: 'failed', error: String((err as Error)?.message ?? err).slice(0, 200) });
  process.exit(1);
}
