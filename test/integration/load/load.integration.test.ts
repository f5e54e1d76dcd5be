import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LabLoadResult } from '../../../src/load/lab-load.js';
import { labLoad } from '../../../src/load/lab-load.js';
import { openLabStore } from '../../../src/store/open.js';
import { type RunningLab, startLab } from '../../support/lab.js';

/** The numbers of a run must add up, whatever the machine's speed. */
function expectConsistent(r: LabLoadResult, clients: number): void {
  const errorCount = Object.values(r.errors).reduce((a, b) => a + b, 0);
  expect(r.requests).toBeGreaterThan(0);
  expect(r.ok + errorCount).toBe(r.requests);
  expect(r.services.reduce((a, s) => a + s.requests, 0)).toBe(r.requests);
  expect(r.services.reduce((a, s) => a + s.errors, 0)).toBe(errorCount);
  expect(r.latencyMs.count).toBe(r.requests);
  expect(r.latencyMs.p50).toBeLessThanOrEqual(r.latencyMs.p90);
  expect(r.latencyMs.p90).toBeLessThanOrEqual(r.latencyMs.p99);
  expect(r.latencyMs.p99).toBeLessThanOrEqual(r.latencyMs.p999);
  expect(r.latencyMs.p999).toBeLessThanOrEqual(r.latencyMs.max);
  expect(r.logins.attempted).toBe(clients);
  expect(r.logins.ok + Object.values(r.logins.errors).reduce((a, b) => a + b, 0)).toBe(clients);
  expect(r.users).toEqual({ created: clients, removed: clients });
}

async function loadUsersLeft(home: string): Promise<string[]> {
  return Object.keys((await openLabStore(home).data()).users).filter((u) => u.startsWith('load-'));
}

describe('lab load on a process lab (trusted)', () => {
  let lab: RunningLab;
  beforeAll(async () => {
    lab = await startLab('trusted', 3);
  });
  afterAll(async () => {
    await lab?.[Symbol.asyncDispose]();
  });

  it('logs every client in, spreads requests over the services, and removes its users', async () => {
    const seen: string[] = [];
    const r = await labLoad({
      home: lab.home,
      clients: 5,
      durationMs: 2000,
      onProgress: (p) => seen.push(p.phase),
    });
    expectConsistent(r, 5);
    expect(r.posture).toBe('trusted');
    expect(r.mode).toBe('closed-loop');
    expect(r.logins.ok).toBe(5);
    // every service of this lab got load, and a healthy lab refuses none of it
    expect(r.services.map((s) => s.service).sort()).toEqual(
      lab.state.parts
        .filter((p) => p.kind === 'service')
        .map((p) => p.name)
        .sort(),
    );
    expect(r.errors).toEqual({});
    expect(seen).toContain('requests');
    expect(await loadUsersLeft(lab.home)).toEqual([]);
  });

  it('refuses a mix whose role may do none of its requests, before making any user', async () => {
    // A guest may do nothing the mix asks for: refused up front with a clear error, no users made.
    const mix = join(lab.home, 'mix.json');
    await writeFile(
      mix,
      JSON.stringify({ roles: ['guest'], requests: [{ service: 'accounts', action: 'write' }] }),
    );
    await expect(
      labLoad({ home: lab.home, clients: 2, durationMs: 500, mixFile: mix }),
    ).rejects.toMatchObject({
      code: 'INVALID_INPUT',
    });
    expect(await loadUsersLeft(lab.home)).toEqual([]);
  });

  it('refuses bad input with a clear code', async () => {
    await expect(labLoad({ home: lab.home, clients: 0, durationMs: 1000 })).rejects.toMatchObject({
      code: 'INVALID_INPUT',
    });
    await expect(
      labLoad({ home: lab.home, clients: 1, durationMs: 1000, mixFile: join(lab.home, 'missing.json') }),
    ).rejects.toMatchObject({ code: 'FILE_NOT_FOUND' });
    await expect(
      labLoad({ home: join(lab.home, 'elsewhere'), clients: 1, durationMs: 1000 }),
    ).rejects.toMatchObject({ code: 'LAB_NOT_RUNNING' });
    // Client containers need a Docker lab: refused before any user is made.
    await expect(
      labLoad({ home: lab.home, clients: 2, clientContainers: true, durationMs: 1000 }),
    ).rejects.toMatchObject({ code: 'RUNTIME_UNSUPPORTED' });
  });
});

describe('lab load on a process lab (none), constant rate', () => {
  let lab: RunningLab;
  beforeAll(async () => {
    lab = await startLab('none', 3);
  });
  afterAll(async () => {
    await lab?.[Symbol.asyncDispose]();
  });

  it('sends at most the scheduled requests, only those of the mix', async () => {
    const mix = join(lab.home, 'mix.json');
    await writeFile(
      mix,
      JSON.stringify({
        roles: ['admin'],
        requests: [
          { service: 'customers', database: 'customers', action: 'read', weight: 3 },
          { service: 'accounts', action: 'query', weight: 1 },
        ],
      }),
    );
    const rate = 40;
    const r = await labLoad({ home: lab.home, clients: 4, durationMs: 2000, rate, mixFile: mix });
    expectConsistent(r, 4);
    expect(r.mode).toBe('constant-rate');
    // the schedule bounds the count: rate × duration, plus at most one per client for rounding
    expect(r.requests).toBeLessThanOrEqual((rate * 2000) / 1000 + 4);
    expect(r.services.map((s) => s.service).sort()).toEqual(['accounts', 'customers']);
    expect(r.errors).toEqual({});
    expect(await loadUsersLeft(lab.home)).toEqual([]);
  });
});
