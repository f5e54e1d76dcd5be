import { Flags } from '@oclif/core';
import { recoverAttackRun } from '../../src/attacks/journal.js';
import { BaseCommand } from '../../src/command-support/base-command.js';
import { isTrustedMsError } from '../../src/errors.js';
import { type LabDownResult, labDown } from '../../src/lab/down.js';
import { recoverLoadRuns } from '../../src/load/journal.js';

export type LabDownCommandResult = LabDownResult & { attackReverted: string[]; loadCleaned: string[] };

export default class LabDown extends BaseCommand {
  static override summary = 'Stop every part the lab started.';
  static override description =
    'Stops the PostgreSQL server `lab up --store postgres` started (its data stays for the next lab up; --purge drops it). Also undoes what an `attack simulate` killed half-way left in this home, from the record it keeps before each step: the labs it brought up, tampered service code and configs, the attack users and their keys; and what a killed `lab load` left: its load users and client containers. Without a state file (a `lab up` killed before writing it) it still stops the processes started for this home. Signals: SIGINT or SIGTERM stop it where it is; running it again finishes the job.';
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --all',
    '<%= config.bin %> <%= command.id %> --purge --json',
  ];
  static override flags = {
    all: Flags.boolean({
      description:
        'also remove every container and network of any trusted-ms lab, found by label (e.g. after a crash)',
    }),
    purge: Flags.boolean({
      description:
        "also drop the data of the PostgreSQL server `lab up --store postgres` started (users, keys, audit log) and the home's choice of it: the next lab up uses the home's files again. A server given with --store-url is never touched",
    }),
  };

  async run(): Promise<LabDownCommandResult> {
    const { flags } = await this.parse(LabDown);
    const home = this.labHome(flags);
    // Before the lab stops: its users are removed through the security service while it runs. One
    // that does not answer is not written around (src/users/store-writer.ts): then after the lab
    // stops, from the store, which nothing else writes by then. `lab down` itself must not fail on it.
    let loadCleaned: string[] = [];
    let loadLater = false;
    try {
      loadCleaned = await recoverLoadRuns(home);
    } catch (err) {
      if (!isTrustedMsError(err, 'SERVICE_UNAVAILABLE')) throw err;
      loadLater = true;
    }
    const down = await labDown(home, undefined, { all: flags.all, purge: flags.purge });
    if (loadLater) loadCleaned = await recoverLoadRuns(home);
    for (const line of loadCleaned) this.log(`Cleaned up (killed load run): ${line}`);
    const attack = await recoverAttackRun(home);
    const result = { ...down, attackReverted: attack.reverted, loadCleaned };
    for (const line of attack.reverted) this.log(`Reverted (interrupted attack run): ${line}`);
    if (attack.busy)
      this.warn(
        `an attack run (pid ${attack.busy.pid}) is still running in ${home}: it reverts its own changes`,
      );
    if (result.removed.length > 0) this.log(`Removed by label: ${result.removed.join(', ')}.`);
    if (result.purged.length > 0) this.log(`Purged: ${result.purged.join(', ')}.`);
    if (result.labId === undefined)
      this.log(
        result.stopped.length > 0
          ? `No lab state; stopped ${result.stopped.length} leftover process(es) of an interrupted start.`
          : 'No lab was running.',
      );
    else
      this.log(`Lab ${result.labId}: stopped ${result.stopped.length} part(s) in ${result.durationMs} ms.`);
    return result;
  }
}
