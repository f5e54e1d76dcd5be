/**
 * The latency-distribution chart of `npm run bench`, as a self-contained SVG: latency (ms) against
 * percentile on the usual HdrHistogram axis, where 90 %, 99 %, 99.9 % are evenly spaced (x =
 * log10(1 / (1 - p))), one line per posture. Hand-written: a few paths and labels need no library.
 */

export interface Curve {
  label: string;
  color: string;
  /** [percentile (0-100), latency ms] */
  points: [number, number][];
}

export const CHART_PERCENTILES = [
  0, 10, 20, 30, 40, 50, 55, 60, 65, 70, 75, 80, 85, 87.5, 90, 92.5, 95, 96, 97, 98, 98.5, 99, 99.25, 99.5,
  99.6, 99.7, 99.8, 99.9, 99.95, 99.99,
] as const;

const W = 720;
const H = 400;
const M = { left: 60, right: 150, top: 40, bottom: 50 };
const X_MAX = 4; // 99.99 %

const xOf = (p: number): number => Math.min(X_MAX, Math.log10(1 / Math.max(1e-4, 1 - p / 100)));
const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A round step for about `n` ticks up to `max`. */
function niceStep(max: number, n: number): number {
  const raw = max / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((k) => k * mag).find((s) => s >= raw) ?? 10 * mag;
}

export function latencyChartSvg(title: string, curves: readonly Curve[]): string {
  const yMaxRaw = Math.max(1, ...curves.flatMap((c) => c.points.map(([, y]) => y)));
  const step = niceStep(yMaxRaw, 6);
  const yMax = Math.ceil(yMaxRaw / step) * step;
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const px = (p: number): number => M.left + (xOf(p) / X_MAX) * pw;
  const py = (ms: number): number => M.top + ph - (ms / yMax) * ph;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="14" font-weight="bold">${esc(title)}</text>`,
  ];
  for (let y = 0; y <= yMax + 1e-9; y += step) {
    const yy = py(y).toFixed(1);
    out.push(`<line x1="${M.left}" x2="${M.left + pw}" y1="${yy}" y2="${yy}" stroke="#ddd"/>`);
    out.push(
      `<text x="${M.left - 6}" y="${yy}" text-anchor="end" dominant-baseline="middle">${+y.toFixed(3)}</text>`,
    );
  }
  for (const [p, label] of [
    [0, '0%'],
    [90, '90%'],
    [99, '99%'],
    [99.9, '99.9%'],
    [99.99, '99.99%'],
  ] as const) {
    const xx = px(p).toFixed(1);
    out.push(`<line x1="${xx}" x2="${xx}" y1="${M.top}" y2="${M.top + ph}" stroke="#ddd"/>`);
    out.push(`<text x="${xx}" y="${M.top + ph + 16}" text-anchor="middle">${label}</text>`);
  }
  out.push(
    `<text x="${M.left + pw / 2}" y="${H - 10}" text-anchor="middle">percentile</text>`,
    `<text transform="translate(16 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle">latency (ms)</text>`,
    `<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#888"/>`,
  );
  curves.forEach((c, i) => {
    const d = c.points
      .map(([p, ms], k) => `${k === 0 ? 'M' : 'L'}${px(p).toFixed(1)},${py(ms).toFixed(1)}`)
      .join(' ');
    out.push(`<path d="${d}" fill="none" stroke="${c.color}" stroke-width="2"/>`);
    const ly = M.top + 10 + i * 20;
    out.push(
      `<line x1="${W - M.right + 14}" x2="${W - M.right + 34}" y1="${ly}" y2="${ly}" stroke="${c.color}" stroke-width="2"/>`,
      `<text x="${W - M.right + 40}" y="${ly}" dominant-baseline="middle">${esc(c.label)}</text>`,
    );
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
