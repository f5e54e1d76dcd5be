import chalk from 'chalk';
import type { AttackReport, ScenarioResult } from './runner.js';

/** A result's column: its lab's variant (a report made before variants existed: its posture). */
export function columnOf(r: Pick<ScenarioResult, 'posture'> & { variant?: string }): string {
  return r.variant ?? r.posture;
}

/** A cell's width: the longest outcome, `inconclusive`, with its marks. */
const CELL = 14;

/**
 * The terminal matrix: scenario × posture, outcome colored, `!` where it differs from the
 * expectation, `~` where a second run gave it (the first inconclusive).
 */
export function renderMatrix(report: AttackReport): string {
  const postures = [...new Set(report.results.map(columnOf))];
  const ids = [...new Set(report.results.map((r) => r.id))];
  const width = Math.max(8, ...ids.map((i) => i.length));
  const cell = (r: ScenarioResult | undefined): string => {
    if (r === undefined) return ''.padEnd(CELL);
    // `~`: judged on a second run, the first having been inconclusive
    const text = `${r.outcome}${r.rerunAfter === undefined ? '' : '~'}${r.passed ? '' : '!'}`.padEnd(CELL);
    if (!r.passed) return chalk.bgRed.white(text);
    return r.outcome === 'blocked' ? chalk.green(text) : chalk.yellow(text);
  };
  const lines = [`${'scenario'.padEnd(width)}  ${postures.map((p) => p.padEnd(CELL)).join(' ')}`];
  for (const id of ids) {
    lines.push(
      `${id.padEnd(width)}  ${postures.map((p) => cell(report.results.find((r) => r.id === id && columnOf(r) === p))).join(' ')}`,
    );
  }
  const { total, passed, failed } = report.summary;
  lines.push(
    '',
    `${total} runs, ${passed} as expected, ${failed} not (${(report.durationMs / 1000).toFixed(1)} s)` +
      (failed > 0 ? ` — ${chalk.red('outcomes marked ! differ from their expectation')}` : ''),
  );
  for (const r of report.results.filter((x) => !x.passed)) {
    lines.push(
      `  ${chalk.red('✗')} ${r.id} in ${columnOf(r)}: ${r.ablation ? 'not judged' : `expected ${r.expected}, got ${r.outcome}`}` +
        (r.evidence.inconclusive === undefined ? '' : ` (${r.evidence.inconclusive})`) +
        (r.error ? ` (${r.error.code}: ${r.error.message})` : '') +
        (r.reverted ? '' : ` (revert failed: ${r.revertError})`),
    );
  }
  for (const r of report.results.filter((x) => x.rerunAfter !== undefined)) {
    lines.push(`  ~ ${r.id} in ${columnOf(r)}: run again after an inconclusive first run (${r.rerunAfter})`);
  }
  for (const n of report.notApplicable ?? []) {
    lines.push(`  - ${n.id} in ${n.variant}: not run, not applicable on this runtime (${n.why})`);
  }
  return lines.join('\n');
}

/** JUnit XML: one testsuite per posture, one testcase per scenario × posture, a failure on a mismatch. */
export function renderJunit(report: AttackReport): string {
  const postures = [...new Set(report.results.map(columnOf))];
  const out = ['<?xml version="1.0" encoding="UTF-8"?>'];
  out.push(
    `<testsuites name="trusted-ms attack simulate" tests="${report.summary.total}" failures="${report.summary.failed}" time="${secs(report.durationMs)}">`,
  );
  for (const p of postures) {
    const rs = report.results.filter((r) => columnOf(r) === p);
    const failed = rs.filter((r) => !r.passed).length;
    out.push(
      `  <testsuite name="posture ${xml(p)}" tests="${rs.length}" failures="${failed}" errors="0" time="${secs(rs.reduce((a, r) => a + r.durationMs, 0))}">`,
    );
    for (const r of rs) {
      out.push(
        `    <testcase classname="attacks.${xml(p)}" name="${xml(r.id)} [${xml(p)}]" time="${secs(r.durationMs)}">`,
      );
      if (!r.passed) {
        const msg = `expected ${r.expected}, got ${r.outcome}${r.error ? ` (${r.error.code})` : ''}${r.evidence.inconclusive === undefined ? '' : ` (${r.evidence.inconclusive})`}`;
        const type = r.outcome === 'inconclusive' ? 'Inconclusive' : 'OutcomeMismatch';
        out.push(`      <failure message="${xml(msg)}" type="${type}">${xml(evidenceText(r))}</failure>`);
      }
      out.push(`      <system-out>${xml(evidenceText(r))}</system-out>`, '    </testcase>');
    }
    out.push('  </testsuite>');
  }
  out.push('</testsuites>', '');
  return out.join('\n');
}

/** The evidence as plain lines: each attempt and its answer, the measurements, any error. */
function evidenceText(r: ScenarioResult): string {
  const lines = r.evidence.attempts.map(
    (a) =>
      `${a.action}: ${a.target} -> ${a.status ?? 'no answer'}${a.code ? ` ${a.code}` : ''}${a.gotData ? ' (data obtained)' : ''}${a.note ? ` — ${a.note}` : ''}`,
  );
  for (const [k, v] of Object.entries(r.evidence.measurements ?? {})) lines.push(`${k} = ${v}`);
  if (r.evidence.inconclusive !== undefined) lines.push(`inconclusive: ${r.evidence.inconclusive}`);
  if (r.rerunAfter !== undefined) lines.push(`run again after an inconclusive first run: ${r.rerunAfter}`);
  if (r.error) lines.push(`error ${r.error.code}: ${r.error.message}`);
  if (!r.reverted) lines.push(`revert failed: ${r.revertError ?? ''}`);
  return lines.join('\n');
}

function secs(ms: number): string {
  return (ms / 1000).toFixed(3);
}

/** Text safe inside XML content and attributes; characters XML 1.0 forbids are dropped. */
function xml(s: string): string {
  return (
    s
      // biome-ignore lint/suspicious/noControlCharactersInRegex: removing exactly those
      .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, '')
      .replace(/&/g, '&amp;')
      .replace(/</g, '&lt;')
      .replace(/>/g, '&gt;')
      .replace(/"/g, '&quot;')
      .replace(/'/g, '&apos;')
  );
}
