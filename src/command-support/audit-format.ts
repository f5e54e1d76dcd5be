import chalk from 'chalk';
import type { AuditRecord } from '../store/audit/record.js';

const PAINT: Record<string, (s: string) => string> = {
  ok: chalk.green,
  allowed: chalk.green,
  denied: chalk.red,
  error: chalk.yellow,
};

/** One audit record as one terminal line: when, outcome, who, what, on what, and the refusal code. */
export function formatAuditRecord(r: AuditRecord): string {
  const paint = PAINT[r.outcome] ?? ((s: string) => s);
  return [
    chalk.dim(`#${r.seq}`),
    r.at,
    paint(r.outcome.padEnd(7)),
    r.actor,
    r.action,
    r.target ?? '-',
    r.code ?? '',
  ]
    .join('  ')
    .trimEnd();
}
