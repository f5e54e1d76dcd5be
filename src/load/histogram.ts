import hdr from 'hdr-histogram-js';

/** Latency percentiles, in milliseconds. */
export interface LatencySummary {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

export type Histogram = hdr.Histogram;

/**
 * An HDR histogram of latencies in microseconds, 1 µs to 5 min at 3 significant digits (0.1 %
 * error at any scale, fixed memory): a sorted array of samples would grow with the run.
 */
export function latencyHistogram(): Histogram {
  return hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 300_000_000,
    numberOfSignificantValueDigits: 3,
    autoResize: true,
  });
}

/** Records one latency given in milliseconds (rounded to the µs, at least 1 µs). */
export function recordMs(h: Histogram, ms: number): void {
  h.recordValue(Math.max(1, Math.round(ms * 1000)));
}

const round = (us: number): number => Math.round(us) / 1000;

/** A percentile as HDR reports it (the top of its bucket), never above the largest value recorded. */
function at(h: Histogram, p: number): number {
  return round(Math.min(h.getValueAtPercentile(p), h.maxValue));
}

export function summarize(h: Histogram): LatencySummary {
  if (h.totalCount === 0) return { count: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0, mean: 0 };
  return {
    count: h.totalCount,
    p50: at(h, 50),
    p90: at(h, 90),
    p99: at(h, 99),
    p999: at(h, 99.9),
    max: round(h.maxValue),
    mean: round(h.mean),
  };
}

/** Latency (ms) at each of `percentiles`: the points of a distribution chart. */
export function percentileCurve(h: Histogram, percentiles: readonly number[]): [number, number][] {
  return percentiles.map((p) => [p, at(h, p)]);
}

/** A histogram as compressed base64 (HdrHistogram's own encoding), to cross a process boundary. */
export function encodeHistogram(h: Histogram): string {
  return hdr.encodeIntoCompressedBase64(h);
}

/** Adds encoded histograms into one: merged counts, so its percentiles are the whole run's. */
export function mergeHistograms(encoded: readonly string[]): Histogram {
  const all = latencyHistogram();
  for (const e of encoded) all.add(hdr.decodeFromCompressedBase64(e));
  return all;
}
