/**
 * Comparing two sets of response times taken interleaved (a round of every class, in a shuffled
 * order, again and again), so that whatever else the machine does slows every class alike. The
 * comparison is rank-based (the probability that a sample of one class is faster than one of the
 * other: the Mann-Whitney statistic over n1 x n2, 0.5 when they do not differ), which one slow
 * outlier cannot move, plus the difference of the medians, so that a real but tiny difference is
 * not called a leak.
 */

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** P(a sample of `a` < a sample of `b`), ties counted half. */
export function probabilityFaster(a: readonly number[], b: readonly number[]): number {
  let wins = 0;
  for (const x of a) for (const y of b) wins += x < y ? 1 : x === y ? 0.5 : 0;
  return wins / (a.length * b.length);
}

/**
 * The thresholds. Under no difference the statistic's spread is sqrt((n1+n2+1)/(12 n1 n2)): 0.084
 * for 24 samples each, so `same` (0.25-0.75) is 3 spreads wide each side (~0.3% of equal classes
 * land outside it, and are called unclear, never different); `different` needs 0.9 (4.8 spreads)
 * and medians `minMedianGapMs` and `minMedianGapRatio` apart. Measured here: an imported bcrypt
 * user against an unknown one without the defence, 1.0 with medians ~4 ms against ~40-60 ms.
 */
export const TIMING_RULES = {
  minSamples: 16,
  sameLow: 0.25,
  sameHigh: 0.75,
  different: 0.9,
  minMedianGapMs: 3,
  minMedianGapRatio: 0.1,
} as const;

export type TimingFinding = 'same' | 'different' | 'unclear';

/** Whether `a` and `b` differ in time: clear-cut both ways, otherwise unclear. */
export function compareTimings(a: readonly number[], b: readonly number[]): TimingFinding {
  const r = TIMING_RULES;
  if (a.length < r.minSamples || b.length < r.minSamples) return 'unclear';
  const p = probabilityFaster(a, b);
  const gap = Math.abs(median(a) - median(b));
  const ratio = gap / Math.max(median(a), median(b));
  if ((p >= r.different || p <= 1 - r.different) && gap >= r.minMedianGapMs && ratio >= r.minMedianGapRatio)
    return 'different';
  if (p >= r.sameLow && p <= r.sameHigh) return 'same';
  return 'unclear';
}
