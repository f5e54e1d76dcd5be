import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { callService } from '../../../src/client/call.js';
import { adminChannel } from '../../../src/kernel/admin-channel.js';
import { readLabState } from '../../../src/kernel/lab-state.js';
import { listServices, verifyParts } from '../../../src/lab/attest.js';
import { restartService } from '../../../src/lab/restart.js';
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

  /*
   * The other half of the same race: the old process measured while it still ran, the report
   * delivered after the restart's. The Docker catalog on a busy machine once had
   * identity.untrusted-service-keeps-cert succeed in trusted, which this explains: the tampered
   * service called trusted for up to a round. Each start is named (PartState.launch) and the
   * security service drops a report of a start that a later one replaced. Before: trusted, 200.
   */
  it('a measurement of the old process delivered after the restart changes nothing', async () => {
    await using lab = await startLab('trusted', 2);
    const name = 'accounts';
    const old = partNamed(lab.state, name);
    expect(old.launch).toEqual(expect.any(String));
    const runtime = new ProcessRuntime();
    // a watchman round's first half: the running (honest) process measured
    const measured = await runtime.measure(old);
    const file = join(old.appDir as string, 'service.mjs');
    await writeFile(file, Buffer.concat([await readFile(file), Buffer.from('\n// tampered\n')]));
    const restarted = await restartService(lab.state, name);
    expect(restarted.attestation).toBe('untrusted');
    expect(restarted.part.launch).not.toBe(old.launch);
    expect((await readLabState(lab.home))?.parts.find((p) => p.name === name)?.launch).toBe(
      restarted.part.launch,
    );

    // its second half, late: the honest hash, for the start that no longer runs
    const state = await readLabState(lab.home);
    const answer = await (await adminChannel(lab.home, state ?? lab.state)).call<{
      services: { name: string; state: string; late?: boolean }[];
    }>('/v1/admin/attestations', { body: { reports: [{ name, hash: measured, launch: old.launch }] } });
    expect(answer.services).toEqual([expect.objectContaining({ name, state: 'untrusted', late: true })]);
    expect((await listServices(lab.home)).find((s) => s.name === name)?.state).toBe('untrusted');
    const alice = await lab.login('alice');
    const r = await callService(alice, {
      gatewayUrl: lab.state.gatewayUrl,
      service: name,
      path: `/db/${name}/records`,
    });
    expect(r.status).toBe(503);
    expect((r.body as { code?: string }).code).toBe('SERVICE_UNTRUSTED');
  }, 120_000);
});
