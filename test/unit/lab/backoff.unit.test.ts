import { describe, expect, it } from 'vitest';
import { RestartBackoff } from '../../../src/lab/supervisor/backoff.js';

const opts = { baseMs: 1000, maxMs: 4000, maxRestarts: 4, stableMs: 30_000 };

describe('the watchman restart backoff', () => {
  it('doubles the wait up to the cap, then gives up after maxRestarts in a row', () => {
    const b = new RestartBackoff(opts);
    const waits: (number | undefined)[] = [];
    let now = 0;
    for (let i = 0; i < 5; i++) {
      const wait = b.delayAfterDeath('svc', now);
      waits.push(wait);
      if (wait === undefined) break;
      now += wait;
      b.started('svc', now);
      now += 100; // dies again at once
    }
    expect(waits).toEqual([1000, 2000, 4000, 4000, undefined]);
  });

  it('counts afresh for a part that stayed up stableMs, and keeps parts apart', () => {
    const b = new RestartBackoff(opts);
    b.started('a', 0);
    b.started('a', 1000);
    expect(b.delayAfterDeath('a', 2000)).toBe(4000);
    expect(b.delayAfterDeath('b', 2000)).toBe(1000);
    expect(b.delayAfterDeath('a', 1000 + 30_000)).toBe(1000);
  });

  it('does not count a start that a foreign listener on its port made fail (forgive)', () => {
    const b = new RestartBackoff(opts);
    let now = 0;
    // the red team's squatter: six starts in a row on EADDRINUSE; forgiven, never given up
    for (let i = 0; i < 6; i++) {
      expect(b.delayAfterDeath('security', now)).toBe(1000);
      b.started('security', now);
      now += 200;
      b.forgive('security');
    }
    // a death of its own still counts
    b.started('security', now);
    expect(b.delayAfterDeath('security', now + 100)).toBe(2000);
  });
});
