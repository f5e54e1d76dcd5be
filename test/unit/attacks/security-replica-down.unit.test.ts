import { describe, expect, it } from 'vitest';
import { securityReplicaDown } from '../../../src/attacks/scenarios/dos.security-replica-down.js';
import { expectationIn, type ScenarioContext } from '../../../src/attacks/types.js';
import type { PartState } from '../../../src/kernel/lab-state.js';

const part = (name: string, kind: PartState['kind']): PartState => ({
  name,
  kind,
  port: 1,
  url: 'http://127.0.0.1:1',
  configFile: '',
  logFile: '',
});
const judged = (measurements: Record<string, number>, inconclusive?: string) =>
  securityReplicaDown.judge({
    evidence: { attempts: [], measurements, ...(inconclusive ? { inconclusive } : {}) },
  } as unknown as ScenarioContext);

describe('dos.security-replica-down', () => {
  it('expects the lab, not the posture: succeeded with one security service, blocked with replicas', () => {
    const one = [part('security', 'security'), part('gateway', 'gateway')];
    const two = [...one, part('security-2', 'security')];
    for (const posture of ['none', 'paper', 'trusted'] as const) {
      expect(expectationIn(securityReplicaDown, { posture, parts: one })).toBe('succeeded');
      expect(expectationIn(securityReplicaDown, { posture, parts: two })).toBe('blocked');
    }
  });

  it('judges from the logins during the outage: most failed, none failed, or neither', () => {
    expect(judged({ loginsDuringOutage: 30, failedDuringOutage: 30 })).toBe('succeeded');
    expect(judged({ loginsDuringOutage: 5, failedDuringOutage: 0 })).toBe('blocked');
    expect(judged({ loginsDuringOutage: 10, failedDuringOutage: 2 })).toBe('inconclusive');
    expect(judged({ loginsDuringOutage: 0, failedDuringOutage: 0 })).toBe('inconclusive');
    expect(judged({}, 'the victim could not log in before the kill (AUTH_FAILED)')).toBe('inconclusive');
  });
});
