import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SCENARIOS } from '../../../src/attacks/registry.js';
import { type AttackReport, runAttacks, type ScenarioResult } from '../../../src/attacks/runner.js';
import { tamperedCode } from '../../../src/attacks/scenarios/malicious-service.tampered-code.js';
import { readSink } from '../../../src/attacks/sink.js';
import { callService } from '../../../src/client/call.js';
import { POSTURES } from '../../../src/defences/posture.js';
import { readLabState } from '../../../src/kernel/lab-state.js';
import { listServices } from '../../../src/lab/attest.js';
import { labDown } from '../../../src/lab/down.js';
import { ProcessRuntime } from '../../../src/lab/runtimes/process.js';
import { labUp } from '../../../src/lab/up.js';
import { type RunningLab, startLab } from '../../support/lab.js';

// accounts, customers (which calls accounts) and catalog (which calls nothing): every link and
// every victim these scenarios need.
const SERVICES = 3;
const IDS = [
  'malicious-service.tampered-code',
  'malicious-service.lying-attestation',
  'malicious-service.lateral-theft',
  'malicious-service.impersonation',
  'mitm.eavesdrop',
  'mitm.tamper',
];
const MINE = SCENARIOS.filter((s) => IDS.includes(s.id));

describe.sequential('malicious services and men in the middle, against real labs', () => {
  let report: AttackReport;
  const result = (id: string, posture: string): ScenarioResult => {
    const r = report.results.find((x) => x.id === id && x.posture === posture);
    if (r === undefined) throw new Error(`no result for ${id} in ${posture}`);
    return r;
  };
  const attempt = (r: ScenarioResult, action: RegExp) =>
    r.evidence.attempts.filter((a) => action.test(a.action));

  it('runs the six scenarios in every posture, each as expected, reverted', async () => {
    expect(MINE.map((s) => s.id)).toEqual(IDS);
    report = await runAttacks({ scenarios: MINE, postures: POSTURES, services: SERVICES });
    const failures = report.results
      .filter((r) => !r.passed)
      .map((r) => `${r.id}@${r.posture}: ${r.outcome} ${r.error?.message ?? ''} ${r.revertError ?? ''}`);
    expect(failures).toEqual([]);
    expect(report.results).toHaveLength(IDS.length * POSTURES.length);
    expect(report.results.every((r) => r.reverted)).toBe(true);
  }, 300_000);

  it('sees every one succeed in none and be blocked in trusted, from evidence', () => {
    for (const id of IDS) {
      const none = result(id, 'none');
      expect(none.outcome, id).toBe('succeeded');
      expect(none.evidence.attempts.some((a) => a.gotData)).toBe(true);
      const trusted = result(id, 'trusted');
      expect(trusted.outcome, id).toBe('blocked');
      expect(trusted.evidence.attempts.length, id).toBeGreaterThan(1);
      expect(trusted.evidence.attempts.every((a) => !a.gotData)).toBe(true);
    }
  });

  it("matches the paper's scheme: it catches an honest tampered service, not a lying one, nor anything between services", () => {
    expect(result('malicious-service.tampered-code', 'paper').outcome).toBe('blocked');
    expect(attempt(result('malicious-service.tampered-code', 'paper'), /victim reads/)[0]?.code).toBe(
      'SERVICE_UNTRUSTED',
    );
    for (const id of IDS.slice(1)) expect(result(id, 'paper').outcome, id).toBe('succeeded');
  });

  it('shows each trusted defence at work in the evidence', () => {
    // Attestation measured from outside: the gateway refuses the tampered service, nothing is stolen.
    for (const id of ['malicious-service.tampered-code', 'malicious-service.lying-attestation']) {
      const r = result(id, 'trusted');
      expect(attempt(r, /victim reads/)[0]).toMatchObject({ status: 503, code: 'SERVICE_UNTRUSTED' });
      expect(r.evidence.measurements?.sinkRecords, id).toBe(0);
    }
    // The peer check: the compromised catalog reached customers and was refused by name.
    const lateral = result('malicious-service.lateral-theft', 'trusted');
    expect(attempt(lateral, /sink/)[0]?.note).toMatch(/"status":403.*PEER_CERTIFICATE_INVALID/);
    // mTLS: the rogue's certificate from another CA is refused; it never sees a request.
    const rogue = result('malicious-service.impersonation', 'trusted');
    expect(attempt(rogue, /overview/)[0]?.note).toContain('SERVICE_UNAVAILABLE');
    expect(attempt(rogue, /reads accounts/)[0]?.status).toBe(502);
    // (The rogue also reports refused handshakes to the sink, without waiting: not asserted.)
    expect(attempt(rogue, /credential at the sink/)[0]?.note).not.toContain('/accounts/credentials');
    expect(rogue.evidence.measurements?.sinkRecordsWithData).toBe(0);
    // The proxy relayed real TLS (thousands of bytes) and read nothing; the terminating one got none.
    const eaves = result('mitm.eavesdrop', 'trusted');
    const [relayed, terminated] = attempt(eaves, /bytes relayed/);
    expect(relayed?.note).toMatch(/TLS/);
    expect(eaves.evidence.measurements?.proxyBytesDown).toBeGreaterThan(1000);
    expect(terminated?.note).toMatch(/0 B up.*caller refused the handshake/);
    // Flipped ciphertext fails its tag: customers got no answer rather than a changed one.
    const tamper = result('mitm.tamper', 'trusted');
    const [flipped, terminating] = attempt(tamper, /change the accounts answer/);
    expect(flipped).toMatchObject({ status: 502, gotData: false });
    expect(flipped?.note).toMatch(/[1-9]\d* TLS record\(s\) altered/);
    expect(terminating).toMatchObject({ status: 502, gotData: false });
  });

  it('shows what the attacks got where they worked', () => {
    const theft = result('malicious-service.tampered-code', 'none');
    expect(theft.evidence.measurements?.sinkRecordsWithData).toBeGreaterThan(0);
    expect(attempt(result('mitm.tamper', 'paper'), /change the accounts answer/)[0]?.note).toMatch(
      /customers received 4 record\(s\) from accounts, which holds 3/,
    );
    expect(attempt(result('mitm.eavesdrop', 'paper'), /bytes relayed/)[0]).toMatchObject({ gotData: true });
  });
});

describe.sequential('a running trusted lab after the six scenarios', () => {
  let lab: RunningLab;
  let before: { config: string; code: Buffer }[];
  const serviceNames = ['accounts', 'customers', 'catalog'];

  beforeAll(async () => {
    lab = await startLab('trusted', SERVICES);
    before = await Promise.all(
      serviceNames.map(async (n) => {
        const p = lab.state.parts.find((x) => x.name === n);
        return {
          config: await readFile(p?.configFile as string, 'utf8'),
          code: await readFile(join(p?.appDir as string, 'service.mjs')),
        };
      }),
    );
  }, 60_000);
  afterAll(async () => {
    await lab?.[Symbol.asyncDispose]();
  }, 60_000);

  it('is as it was: same code and configs, every service attested and answering, no leftover process', async () => {
    const r = await runAttacks({ scenarios: MINE, postures: ['trusted'], home: lab.home });
    expect(r.ok).toBe(true);
    const state = await readLabState(lab.home);
    const runtime = new ProcessRuntime();
    for (const [i, n] of serviceNames.entries()) {
      const p = state?.parts.find((x) => x.name === n);
      expect(await readFile(p?.configFile as string, 'utf8'), n).toBe(before[i]?.config);
      expect(
        (await readFile(join(p?.appDir as string, 'service.mjs'))).equals(before[i]?.code as Buffer),
      ).toBe(true);
      expect(await runtime.isAlive(p as NonNullable<typeof p>), n).toBe(true);
    }
    expect((await listServices(lab.home)).map((s) => [s.name, s.state])).toEqual(
      serviceNames.sort().map((n) => [n, 'trusted']),
    );
    const alice = await lab.login('alice');
    const overview = await callService(alice, {
      gatewayUrl: lab.state.gatewayUrl,
      service: 'customers',
      path: '/overview',
    });
    expect(overview.body).toMatchObject({ peers: { accounts: { status: 200, count: 3 } } });
    // The sink is a part of the lab too, and what it holds is for the lab token only.
    const sink = await readSink(lab.state);
    expect(sink.last).toBeGreaterThan(0);
  }, 120_000);
});

describe.sequential('a broken defence is caught', () => {
  it('with the gateway routing to untrusted services, tampered-code in trusted fails', async () => {
    const { mkdtemp, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const dir = await mkdtemp(join(tmpdir(), 'tms-attack-broken-attest-'));
    const home = join(dir, 'home');
    try {
      await labUp({ home, posture: 'trusted', services: SERVICES, without: ['attestation:measured'] });
      const broken = await runAttacks({ scenarios: [tamperedCode], postures: ['trusted'], home });
      expect(broken.results[0]).toMatchObject({
        id: 'malicious-service.tampered-code',
        posture: 'trusted',
        expected: 'blocked',
        outcome: 'succeeded',
        passed: false,
        reverted: true,
      });
      expect(broken.results[0]?.evidence.measurements?.sinkRecordsWithData).toBeGreaterThan(0);
      expect(broken.ok).toBe(false);
    } finally {
      await labDown(home);
      await rm(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
