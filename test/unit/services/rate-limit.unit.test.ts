import { describe, expect, it } from 'vitest';
import { KeyedConcurrency, RateLimiter } from '../../../src/defences/rate-limit.js';

describe('RateLimiter.peek', () => {
  it('says whether a token is left without taking it: failures are counted after the fact', () => {
    let t = 0;
    const failures = new RateLimiter(1, 2, () => t);
    expect(failures.peek('a')).toBe(true);
    expect(failures.peek('a')).toBe(true);
    expect(failures.take('a')).toBe(true);
    expect(failures.take('a')).toBe(true);
    expect(failures.peek('a')).toBe(false);
    expect(failures.peek('b')).toBe(true);
    t += 1000;
    expect(failures.peek('a')).toBe(true);
  });
});

describe('KeyedConcurrency', () => {
  it('lets `limit` through per key, queues the next in order, refuses beyond the queue', async () => {
    const gate = new KeyedConcurrency(2, 1);
    const r1 = await gate.acquire('attacker');
    const r2 = await gate.acquire('attacker');
    expect(r1).toBeTypeOf('function');
    expect(r2).toBeTypeOf('function');
    let third: (() => void) | undefined;
    const waiting = gate.acquire('attacker').then((r) => {
      third = r;
    });
    // the queue (1) is full: refused at once
    expect(await gate.acquire('attacker')).toBeUndefined();
    // another key never waits behind this one
    const other = await gate.acquire('victim');
    expect(other).toBeTypeOf('function');
    expect(third).toBeUndefined();
    r1?.();
    r1?.(); // a second release of the same slot changes nothing
    await waiting;
    expect(third).toBeTypeOf('function');
    expect(await Promise.race([gate.acquire('attacker'), Promise.resolve('queued')])).toBe('queued');
  });

  it('forgets a key once nothing of it is in flight', async () => {
    const gate = new KeyedConcurrency(1, 0);
    const r = await gate.acquire('a');
    expect(await gate.acquire('a')).toBeUndefined();
    r?.();
    const again = await gate.acquire('a');
    expect(again).toBeTypeOf('function');
    again?.();
  });
});

describe('RateLimiter.reserve', () => {
  it('hands out waits that space a flood to the rate, and refuses beyond the longest wait', () => {
    const t = 0;
    const perUser = new RateLimiter(10, 2, () => t);
    expect([perUser.reserve('a', 500), perUser.reserve('a', 500)]).toEqual([0, 0]);
    // then one every 100 ms, queued behind one another
    expect(perUser.reserve('a', 500)).toBeCloseTo(100);
    expect(perUser.reserve('a', 500)).toBeCloseTo(200);
    expect(perUser.reserve('a', 150)).toBeUndefined();
    // a refusal reserved nothing
    expect(perUser.reserve('a', 500)).toBeCloseTo(300);
    expect(perUser.reserve('b', 0)).toBe(0);
  });
});
