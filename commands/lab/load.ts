import { Flags } from '@oclif/core';
import { BaseCommand } from '../../src/command-support/base-command.js';
import { onInterrupt, onSigterm } from '../../src/command-support/interrupt.js';
import { parseDuration } from '../../src/load/duration.js';
import { recoverLoadRuns } from '../../src/load/journal.js';
import { type LabLoadResult, labLoad, MAX_CLIENT_CONTAINERS, MAX_CLIENTS } from '../../src/load/lab-load.js';
import { loadResultJson, renderLoadResult } from '../../src/load/report.js';

export type LabLoadCommandResult = Omit<LabLoadResult, 'histogram'>;

export default class LabLoad extends BaseCommand {
  static override summary = 'Send load through the gateway: virtual users that log in and call the services.';
  static override description =
    'Creates one user per client, each with its own key pair, through the running lab (and removes them after); each logs in with the full handshake on its own connection, then sends requests across the services until the duration is over. Closed loop by default (one request in flight per client); --rate sends at a constant total rate and measures latency from the intended send time, so a stall is not hidden (no coordinated omission). Latencies come from an HDR histogram. Traffic goes only to the lab gateway on 127.0.0.1 and stops at the duration.\n\nA mix file is JSON: {"roles": ["analyst", "admin"], "requests": [{"service": "orders", "database": "orders", "action": "read", "weight": 3}]}; each user draws only among the requests its role may do. Without one, every database of the lab with 6 read / 3 query / 1 write, and every role.\n\nOn a Docker lab, --client-containers N runs the N virtual users as the paper did: each in a container of its own on the lab\'s edge network (the lab\'s node image, nothing pulled), sending to the gateway\'s address there, so the gateway sees N clients at N addresses; they log in, start together, and their HDR histograms are merged here. The containers are labelled as the lab\'s and removed afterwards whatever happens; the memory each used is measured mid-run and reported.\n\nBefore it makes anything it records the run in --home (load-runs/). Signals: on SIGINT (Ctrl-C) it ends the run early, removes the load users and prints what was measured; with --client-containers, SIGINT or SIGTERM removes the client containers and the load users at once and exits 130 or 143; without, SIGTERM removes the load users at once and exits 143. After SIGKILL, the next `lab load` or `lab down` in the same home removes what the run left (its users; `lab down` its containers too).';
  static override examples = [
    '<%= config.bin %> <%= command.id %> --clients 150 --duration 10s',
    '<%= config.bin %> <%= command.id %> --clients 20 --duration 30s --rate 500',
    '<%= config.bin %> <%= command.id %> --clients 5 --duration 2s --mix mix.json --json',
    '<%= config.bin %> <%= command.id %> --client-containers 150 --duration 10s',
  ];
  static override flags = {
    clients: Flags.integer({ description: 'virtual users', min: 1, max: MAX_CLIENTS, default: 150 }),
    duration: Flags.string({ description: 'how long to send requests (10s, 500ms, 2m)', default: '10s' }),
    rate: Flags.integer({
      description: 'total requests per second (constant rate); closed loop without it',
      min: 1,
    }),
    mix: Flags.string({ description: 'JSON file: roles, and the requests with their weights' }),
    'client-containers': Flags.integer({
      description: 'run this many virtual users, each in a container of its own (Docker lab only)',
      min: 1,
      max: MAX_CLIENT_CONTAINERS,
      exclusive: ['clients'],
    }),
  };

  async run(): Promise<LabLoadCommandResult> {
    const { flags } = await this.parse(LabLoad);
    const tty = process.stderr.isTTY === true;
    const home = this.labHome(flags);
    const containers = flags['client-containers'];
    const say = (line: string): void => {
      process.stderr.write(`${tty ? '\r\x1b[K' : ''}… ${line}\n`);
    };
    // With client containers, or on SIGTERM: clean up at once from the run's record (containers
    // would otherwise send until the duration is over) and exit 130 / 143.
    const cleanUpNow = async (): Promise<void> => {
      for (const line of await recoverLoadRuns(home, { thisProcess: true })) say(line);
    };
    const stopInterrupt =
      containers === undefined ? onSigterm(cleanUpNow, say) : onInterrupt(cleanUpNow, say);
    // Without them, Ctrl-C ends the run early but still removes the load's users and prints what was measured.
    const abort = new AbortController();
    const onSigint = (): void => abort.abort();
    if (containers === undefined) process.once('SIGINT', onSigint);
    const clients = containers ?? flags.clients;
    const result = await labLoad({
      signal: abort.signal,
      home,
      clients,
      ...(containers === undefined ? {} : { clientContainers: true }),
      durationMs: parseDuration(flags.duration),
      ...(flags.rate === undefined ? {} : { rate: flags.rate }),
      ...(flags.mix === undefined ? {} : { mixFile: flags.mix }),
      onStep: say,
      onProgress: (p) => {
        const where =
          p.phase === 'login'
            ? `logging in: ${p.done}/${clients}`
            : `${(p.elapsedMs / 1000).toFixed(0)}/${(p.durationMs / 1000).toFixed(0)} s: ${p.done} requests, ${Math.round(p.perSecond)} req/s`;
        const line = `… ${where}, ${p.errors} errors`;
        process.stderr.write(tty ? `\r\x1b[K${line}` : `${line}\n`);
      },
    }).finally(() => {
      process.off('SIGINT', onSigint);
      stopInterrupt();
    });
    if (tty) process.stderr.write('\r\x1b[K');
    this.log(renderLoadResult(result));
    const c = result.clientContainers;
    if (c) {
      this.log(
        `client containers: ${c.count}, started in ${(c.startMs / 1000).toFixed(1)} s; memory each mid-run: mean ${c.memoryMiB.mean} MiB, max ${c.memoryMiB.max} MiB (${c.memoryMiB.sampled} sampled, limit ${c.memoryMiB.limit} MiB)`,
      );
    }
    return loadResultJson(result);
  }
}
