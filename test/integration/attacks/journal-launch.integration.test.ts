import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AttackRunJournal, recoverAttackRun } from '../../../src/attacks/journal.js';
import type { ServicePartConfig } from '../../../src/kernel/part-config.js';
import { verifyServices } from '../../../src/lab/attest.js';
import { restartService } from '../../../src/lab/restart.js';
import { type RunningLab, startLab } from '../../support/lab.js';

/*
 * A run killed with a service's launch changed (trusted, processes): the recovery puts back its
 * config and its pass-through, and the launch it restarts is the registered one again.
 */
describe.sequential("recovery of a killed run restores a service's launch", () => {
  let lab: RunningLab;
  const service = 'customers';
  const part = () => lab.state.parts.find((p) => p.name === service);
  beforeAll(async () => {
    lab = await startLab('trusted', 2);
  }, 60_000);
  afterAll(async () => {
    await lab?.[Symbol.asyncDispose]();
  });

  it('a config the scenario registered (a proxy on the link), then a pass-through it did not', async () => {
    const journal = await AttackRunJournal.begin(lab.home);
    await journal.inPlace(lab.state, join(lab.home, 'attack-keys'));
    await journal.detonating(lab.state, 'mitm.eavesdrop');
    const configFile = part()?.configFile as string;
    const original = JSON.parse(await readFile(configFile, 'utf8')) as ServicePartConfig;
    // The MITM scenarios' reconfiguration is registered, so the service stays trusted ...
    const moved = await restartService(lab.state, service, {
      config: { ...original, peers: { ...original.peers, accounts: 'https://127.0.0.1:9' } },
    });
    expect(moved.attestation).toBe('trusted');
    // ... and a pass-through nobody registered makes it untrusted.
    const injected = await restartService(lab.state, service, { env: { NODE_OPTIONS: '--no-warnings' } });
    expect(injected.attestation).toBe('untrusted');

    const { reverted } = await recoverAttackRun(lab.home, { own: true });
    expect(reverted.join('\n')).toMatch(
      /customers \(mitm\.eavesdrop\): its config, its environment, restarted/,
    );
    expect(await readFile(configFile, 'utf8')).toBe(`${JSON.stringify(original, null, 2)}\n`);
    const { services } = await verifyServices(lab.home, [service]);
    expect(services[0]?.state).toBe('trusted');
  }, 90_000);
});
