import { createHash } from 'node:crypto';
import { columnOf } from './report.js';
import type { AttackReport, ScenarioResult } from './runner.js';

/*
 * The report as one self-contained HTML page: no script at all, the CSS inline and allowed by its
 * hash only, the chart as inline SVG. Evidence comes from HTTP answers the attacker got, so every
 * value is escaped, and the page's Content-Security-Policy (`default-src 'none'`) keeps even a
 * missed escape from loading or running anything.
 */

const CSS = `
:root { color-scheme: light; --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --muted: #57606a; --line: #d0d7de; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px; padding: 0 1rem; color: #1f2328; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid var(--line); padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { border: 1px solid var(--line); padding: .3rem .55rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12.5px; }
.banner { padding: .6rem .9rem; border-radius: 6px; font-weight: 600; margin: 1rem 0; }
.banner.ok { background: #dafbe1; color: var(--ok); }
.banner.bad { background: #ffebe9; color: var(--bad); }
td.cell { text-align: center; white-space: nowrap; }
td.cell a { color: inherit; text-decoration: none; display: block; }
.blocked { color: var(--ok); font-weight: 600; }
.succeeded { color: var(--warn); font-weight: 600; }
.error { color: var(--muted); font-weight: 600; }
.inconclusive { color: #8250df; font-weight: 600; }
td.fail { background: #ffebe9; outline: 2px solid var(--bad); outline-offset: -2px; }
.verdict { display: block; font-size: 12px; }
.verdict.pass { color: var(--ok); }
.verdict.fail { color: var(--bad); font-weight: 700; }
.muted { color: var(--muted); }
th .muted { font-weight: normal; }
details { border: 1px solid var(--line); border-radius: 6px; margin: .5rem 0; padding: .3rem .7rem; }
details.fail { border-color: var(--bad); }
summary { cursor: pointer; font-weight: 600; }
svg text { font: 12px system-ui, sans-serif; fill: #1f2328; }
`;

const STYLE_HASH = createHash('sha256').update(CSS).digest('base64');
const CSP = `default-src 'none'; style-src 'sha256-${STYLE_HASH}'; img-src data:; base-uri 'none'; form-action 'none'`;

const COLORS = {
  blocked: '#2da44e',
  succeeded: '#d4a72c',
  inconclusive: '#8250df',
  error: '#8c959f',
} as const;
const OUTCOMES = ['blocked', 'succeeded', 'inconclusive', 'error'] as const;

/** Text safe in HTML content and in quoted attributes. */
export function escapeHtml(value: unknown): string {
  return String(value)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

const e = escapeHtml;

export function renderHtml(report: AttackReport): string {
  const postures = postureOrder(report);
  const ids = [...new Set(report.results.map((r) => r.id))];
  const { total, passed, failed } = report.summary;
  const banner = report.ok
    ? `<p class="banner ok" id="verdict">All ${total} runs matched their expectation.</p>`
    : `<p class="banner bad" id="verdict">${failed} of ${total} runs did not match their expectation${total === 0 ? ' (nothing ran)' : ''}.</p>`;
  return [
    '<!doctype html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="${CSP}">`,
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>trusted-ms attack report, ${e(report.startedAt)}</title>`,
    `<style>${CSS}</style>`,
    '</head>',
    '<body>',
    '<h1>trusted-ms attack report</h1>',
    `<p class="muted">Scenario × posture, judged from the evidence the attacker got. ${passed} of ${total} as expected.</p>`,
    banner,
    '<h2>Matrix</h2>',
    matrix(report, ids, postures),
    '<h2>Outcomes per posture</h2>',
    chart(report, postures),
    '<h2>Time per scenario</h2>',
    durations(report),
    '<h2>Run</h2>',
    runTable(report),
    '<h2>Evidence</h2>',
    ...report.results.map((r, i) => evidence(r, i)),
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

/** Postures in run order: those the report ran labs for, then any only seen in results. */
function postureOrder(report: AttackReport): string[] {
  return [
    ...new Set([...report.postures.map((p) => p.variant ?? p.posture), ...report.results.map(columnOf)]),
  ];
}

function matrix(report: AttackReport, ids: string[], postures: string[]): string {
  const rows = ids.map((id) => {
    const first = report.results.find((r) => r.id === id) as ScenarioResult;
    const cells = postures.map((p) => {
      const i = report.results.findIndex((r) => r.id === id && columnOf(r) === p);
      const r = report.results[i];
      if (r === undefined) return '<td class="cell muted">not run</td>';
      const verdict = r.passed
        ? '<span class="verdict pass">pass</span>'
        : `<span class="verdict fail">FAIL: expected ${e(r.expected)}</span>`;
      return `<td class="cell${r.passed ? '' : ' fail'}" data-outcome="${e(r.outcome)}" data-passed="${r.passed}"><a href="#ev-${i}"><span class="${e(r.outcome)}">${e(r.outcome)}</span>${verdict}</a></td>`;
    });
    return `<tr><th scope="row"><code>${e(id)}</code><br><span class="muted">${e(first.title)} · paper attack ${e(first.paperAttack)} · ${e(first.technique)}</span></th>${cells.join('')}</tr>`;
  });
  return [
    '<table id="matrix">',
    `<thead><tr><th scope="col">scenario</th>${postures.map((p) => `<th scope="col">${e(p)}</th>`).join('')}</tr></thead>`,
    `<tbody>${rows.join('\n')}</tbody>`,
    '</table>',
  ].join('\n');
}

/** A horizontal stacked bar per posture: how many runs were blocked, succeeded, inconclusive, or errored. */
function chart(report: AttackReport, postures: string[]): string {
  const barX = 90;
  const barW = 560;
  const rowH = 34;
  const top = 28;
  const height = top + postures.length * rowH + 10;
  const legend = OUTCOMES.map(
    (k, i) =>
      `<rect x="${barX + i * 120}" y="4" width="12" height="12" fill="${COLORS[k]}"/><text x="${barX + i * 120 + 17}" y="14">${k}</text>`,
  ).join('');
  const bars = postures.map((p, row) => {
    const rs = report.results.filter((r) => columnOf(r) === p);
    const y = top + row * rowH;
    const label = `<text x="0" y="${y + 16}">${e(p)}</text>`;
    if (rs.length === 0) return `${label}<text x="${barX}" y="${y + 16}" class="muted">no results</text>`;
    let x = barX;
    const parts = OUTCOMES.map((k) => {
      const n = rs.filter((r) => r.outcome === k).length;
      if (n === 0) return '';
      const w = (n / rs.length) * barW;
      const rect = `<rect x="${x.toFixed(1)}" y="${y}" width="${w.toFixed(1)}" height="22" fill="${COLORS[k]}"><title>${e(p)}: ${n} ${k}</title></rect><text x="${(x + w / 2).toFixed(1)}" y="${y + 15}" text-anchor="middle">${n}</text>`;
      x += w;
      return rect;
    });
    const asExpected = rs.filter((r) => r.passed).length;
    return `${label}${parts.join('')}<text x="${barX + barW + 8}" y="${y + 16}">${asExpected}/${rs.length} as expected</text>`;
  });
  return `<svg id="chart" role="img" aria-label="runs blocked, succeeded, inconclusive and errored per posture" width="${barX + barW + 140}" height="${height}" viewBox="0 0 ${barX + barW + 140} ${height}" xmlns="http://www.w3.org/2000/svg">${legend}${bars.join('')}</svg>`;
}

/** One bar per scenario × posture, its length the run's duration (setup to revert). */
function durations(report: AttackReport): string {
  const labelW = 330;
  const barW = 400;
  const rowH = 18;
  const max = Math.max(1, ...report.results.map((r) => r.durationMs));
  const height = report.results.length * rowH + 4;
  const rows = report.results.map((r, i) => {
    const y = i * rowH;
    const w = Math.max(1, (r.durationMs / max) * barW);
    const color = COLORS[r.outcome];
    return `<text x="0" y="${y + 13}">${e(r.id)} [${e(columnOf(r))}]</text><rect x="${labelW}" y="${y + 3}" width="${w.toFixed(1)}" height="12" fill="${color}"><title>${e(r.id)} in ${e(columnOf(r))}: ${e(r.outcome)}, ${e(seconds(r.durationMs))}</title></rect><text x="${(labelW + w + 6).toFixed(1)}" y="${y + 13}">${e(seconds(r.durationMs))}</text>`;
  });
  return `<svg id="durations" role="img" aria-label="how long each scenario ran, per posture" width="${labelW + barW + 70}" height="${height}" viewBox="0 0 ${labelW + barW + 70} ${height}" xmlns="http://www.w3.org/2000/svg">${rows.join('')}</svg>`;
}

function runTable(report: AttackReport): string {
  const env = report.environment;
  const rows: [string, string][] = [
    ['started', e(report.startedAt)],
    ['duration', `${e(seconds(report.durationMs))} (lab ups and downs included)`],
    ['trusted-ms', e(env.trustedMs)],
    ['Node.js', e(env.node)],
    ['platform', e(env.platform)],
    ['schema', `<code>${e(report.schema)}</code>`],
  ];
  const labs = report.postures.map(
    (p) =>
      `<tr><td>${e(p.variant ?? p.posture)}</td><td class="mono">${e(p.labId || '-')}</td><td>${e(p.lab)}</td><td>${e(p.services)}</td><td>${p.labUpMs === undefined ? '-' : e(seconds(p.labUpMs))}</td><td>${p.error ? `<code>${e(p.error.code)}</code> ${e(p.error.message)}` : ''}</td></tr>`,
  );
  return [
    '<table id="run">',
    ...rows.map(([k, v]) => `<tr><th scope="row">${k}</th><td>${v}</td></tr>`),
    '</table>',
    '<table id="labs">',
    '<thead><tr><th>posture</th><th>lab id</th><th>lab</th><th>services</th><th>lab up</th><th>error</th></tr></thead>',
    `<tbody>${labs.join('\n')}</tbody>`,
    '</table>',
  ].join('\n');
}

function evidence(r: ScenarioResult, i: number): string {
  const attempts = r.evidence.attempts.map(
    (a, n) =>
      `<tr><td>${n + 1}</td><td>${e(a.action)}</td><td class="mono">${e(a.target)}</td><td>${a.status === undefined ? '<span class="muted">no answer</span>' : e(a.status)}</td><td><code>${e(a.code ?? '')}</code></td><td>${a.gotData ? '<strong>yes</strong>' : 'no'}</td><td>${e(a.note ?? '')}</td></tr>`,
  );
  const measurements = Object.entries(r.evidence.measurements ?? {}).map(
    ([k, v]) => `<tr><td><code>${e(k)}</code></td><td>${e(v)}</td></tr>`,
  );
  return [
    `<details id="ev-${i}" class="evidence${r.passed ? '' : ' fail'}"${r.passed ? '' : ' open'}>`,
    `<summary><code>${e(r.id)}</code> in ${e(columnOf(r))}: <span class="${e(r.outcome)}">${e(r.outcome)}</span>, expected ${e(r.expected)} — ${r.passed ? 'pass' : '<span class="verdict fail">FAIL</span>'} <span class="muted">(${e(seconds(r.durationMs))})</span></summary>`,
    `<p>${e(r.title)} · paper attack ${e(r.paperAttack)} · MITRE ATT&amp;CK ${e(r.technique)}</p>`,
    r.evidence.inconclusive === undefined
      ? ''
      : `<p class="verdict fail">No verdict: ${e(r.evidence.inconclusive)}</p>`,
    r.rerunAfter === undefined
      ? ''
      : `<p class="muted">Run twice: the first run was inconclusive (${e(r.rerunAfter)}).</p>`,
    r.error ? `<p class="verdict fail">Error <code>${e(r.error.code)}</code>: ${e(r.error.message)}</p>` : '',
    r.reverted ? '' : `<p class="verdict fail">Revert failed: ${e(r.revertError ?? '')}</p>`,
    attempts.length === 0
      ? '<p class="muted">No attempts recorded.</p>'
      : [
          '<table class="attempts">',
          '<thead><tr><th>#</th><th>action</th><th>target</th><th>status</th><th>code</th><th>got data</th><th>note</th></tr></thead>',
          `<tbody>${attempts.join('\n')}</tbody>`,
          '</table>',
        ].join('\n'),
    measurements.length === 0
      ? ''
      : `<table class="measurements"><thead><tr><th>measurement</th><th>value</th></tr></thead><tbody>${measurements.join('')}</tbody></table>`,
    '</details>',
  ].join('\n');
}

function seconds(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}
