import { renderTable } from '../command-support/table.js';
import type { LatencySummary } from './histogram.js';
import type { LoadRunResult } from './run.js';

const ms = (x: number): string => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const lat = (l: LatencySummary): string[] => [ms(l.p50), ms(l.p90), ms(l.p99), ms(l.p999), ms(l.max)];

/** The load's figures as terminal tables: the totals, then one row per service. */
export function renderLoadResult(r: LoadRunResult): string {
  const errors = Object.entries(r.errors)
    .sort((a, b) => b[1] - a[1])
    .map(([code, n]) => `${code} ${n}`)
    .join(', ');
  const loginErrors = Object.entries(r.logins.errors)
    .map(([code, n]) => `${code} ${n}`)
    .join(', ');
  const lines = [
    `${r.posture} posture, ${r.clients} clients, ${r.mode}${r.targetRate === undefined ? '' : ` at ${r.targetRate} req/s`}, ${(r.durationMs / 1000).toFixed(1)} s`,
    `logins: ${r.logins.ok}/${r.logins.attempted} in ${(r.logins.durationMs / 1000).toFixed(1)} s (${r.logins.perSecond} handshakes/s), p50 ${ms(r.logins.latencyMs.p50)} ms, max ${ms(r.logins.latencyMs.max)} ms${r.logins.retries > 0 ? `, ${r.logins.retries} retries (RATE_LIMITED or timed out)` : ''}${loginErrors ? `; failed: ${loginErrors}` : ''}`,
    renderTable(
      ['requests', 'errors', 'req/s', 'p50 ms', 'p90 ms', 'p99 ms', 'p99.9 ms', 'max ms'],
      [[String(r.requests), String(r.requests - r.ok), String(r.reqPerSec), ...lat(r.latencyMs)]],
    ),
    errors ? `errors by code: ${errors}` : 'errors by code: none',
    renderTable(
      ['service', 'requests', 'errors', 'p50 ms', 'p90 ms', 'p99 ms', 'p99.9 ms', 'max ms'],
      r.services.map((s) => [s.service, String(s.requests), String(s.errors), ...lat(s.latencyMs)]),
    ),
  ];
  return lines.join('\n');
}

/** The result without its histogram object: what `--json` and results files carry. */
export function loadResultJson<T extends LoadRunResult>(r: T): Omit<T, 'histogram'> {
  const { histogram: _h, ...rest } = r;
  return rest;
}
