import { join } from 'node:path';
import { TrustedMsError } from '../errors.js';
import type { LabState } from '../kernel/lab-state.js';
import type { EdgeNetwork } from '../lab/runtimes/edge.js';
import { runtimeFor } from '../lab/runtimes/select.js';
import { packageRoot } from '../paths.js';
import { FLOOD_CAPS, type FloodJob, type FloodMessage, type FloodResult, type FloodRun } from './flood.js';

/** The attacker's container in a Docker lab (a part of the lab's while it runs). */
export const FLOOD_PART = 'dos-flood';

/** Beyond the flood's own bound: the container's start and exit. Then the host kills it. */
const DEADLINE_MARGIN_MS = 15_000;

/**
 * The flood of a Docker lab, from a container of its own on the lab's edge network towards the
 * gateway's address there: the gateway sees the attacker at the container's address, apart from
 * the legitimate user on this host (whom Docker's port relay shows at the edge network's gateway
 * address). The same driver as the worker thread (runFloodJob, in flood-main.ts); the job, with
 * the attacker's session key in a request flood, goes in as the program's 0600 input file. The
 * container is removed when the flood is over, whatever happened; `removeFloodContainers` is the
 * scenario's revert for a run cut short (in dos.ts).
 */
export async function floodInContainer(edge: EdgeNetwork, lab: LabState, job: FloodJob): Promise<FloodRun> {
  const gateway = lab.parts.find((p) => p.kind === 'gateway');
  if (gateway === undefined) throw new TrustedMsError('LAB_NOT_RUNNING', `lab ${lab.labId} has no gateway`);
  const origin = await edge.urlOf(lab, gateway.name);
  let started: () => void = () => undefined;
  const startedP = new Promise<void>((r) => {
    started = r;
  });
  const program = await edge.startProgram(lab, {
    name: FLOOD_PART,
    program: join(packageRoot(), 'dist', 'lab', 'flood.mjs'),
    input: { ...job, origin } satisfies FloodJob,
    deadlineMs: Math.min(job.durationMs, FLOOD_CAPS.durationMs) + DEADLINE_MARGIN_MS,
    onMessage: (m) => {
      if ((m as FloodMessage).event === 'started') started();
    },
  });
  const result = (async (): Promise<FloodResult> => {
    try {
      const exit = await program.exited;
      const messages = exit.messages as FloodMessage[];
      const done = messages.find((m) => m.event === 'result');
      if (done?.event === 'result') return done.result;
      const failed = messages.find((m) => m.event === 'failed');
      const why =
        failed?.event === 'failed'
          ? failed.error
          : exit.timedOut
            ? 'killed at its deadline'
            : `exited with ${exit.exitCode ?? 'no code'}: ${exit.stderr.trim().split('\n').slice(-2).join(' ')}`;
      throw new TrustedMsError('INTERNAL', `the flood container failed: ${why}`);
    } finally {
      await program.remove();
    }
  })();
  return { started: startedP, result };
}

/** Any attacker container of the lab left by a flood cut short, removed (a DoS scenario's revert). */
export async function removeFloodContainers(lab: LabState): Promise<void> {
  const { edge } = await runtimeFor(lab.runtime);
  await edge?.removePrograms(lab.labId, FLOOD_PART);
}
