import { describe, expect, it } from 'vitest';
import { listServices, verifyParts } from '../../../src/lab/attest.js';
import { ProcessRuntime } from '../../../src/lab/runtimes/process.js';
import { startLab } from '../../support/lab.js';
import { partNamed } from '../hardening/wait.js';

/**
 * A measurement made from a lab state that names a process which is gone (a restart under way, the
 * state file not yet naming the new process) is no verdict. The busy ablation matrix had the
 * watchman's round measure such a record while the CLI restarted a service with NODE_OPTIONS: the
 * old record said "trusted" over the restart's "untrusted", and the gateway served the injected
 * module (attestation.env-injection, trusted, 1 of 5 rounds). Before: reported trusted.
 */
describe.runIf(process.platform === 'linux')('a re-measure of a process that is gone', () => {
  it('is deferred, not reported: the registry keeps the verdict of what runs', async () => {
    await using lab = await startLab('trusted', 2);
    const name = lab.state.parts.find((p) => p.kind === 'service')?.name as string;
    const old = partNamed(lab.state, name);
    const runtime = new ProcessRuntime();
    expect((await verifyParts(lab.home, lab.state, [old], runtime))[0]).toMatchObject({ state: 'trusted' });

    // the restart's first step: the old process stopped; the state file still names it
    await runtime.stop(old);
    expect(await runtime.isAlive(old)).toBe(false);
    const stale = await verifyParts(lab.home, lab.state, [old], runtime);
    expect(stale).toEqual([
      { name, state: 'unknown', deferred: expect.stringMatching(/is gone \(being restarted\)/) },
    ]);
    // nothing was reported: the security service's record is the last real measurement's
    const listed = (await listServices(lab.home)).find((s) => s.name === name);
    expect(listed?.state).toBe('trusted');
  }, 120_000);
});
