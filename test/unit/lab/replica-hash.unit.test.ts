import { describe, expect, it } from 'vitest';
import { replicaHash } from '../../../src/lab/runtimes/swarm/replica-hash.js';

describe('replicaHash: one hash for a Swarm service measured in each of its tasks', () => {
  it('is the replicas’ hash when they agree', () => {
    expect(replicaHash(['a'])).toBe('a');
    expect(replicaHash(['a', 'a', 'a'])).toBe('a');
  });

  it('is the odd one out when one replica differs, wherever it is listed', () => {
    expect(replicaHash(['a', 'a', 't'])).toBe('t');
    expect(replicaHash(['t', 'a', 'a'])).toBe('t');
  });

  it('is the newest task’s on a tie (listed first)', () => {
    expect(replicaHash(['t', 'a'])).toBe('t');
    expect(replicaHash(['a', 't'])).toBe('a');
  });

  it('refuses to stand for no replica at all', () => {
    expect(() => replicaHash([])).toThrow(/no replica/);
  });
});
