import type { Ablation } from '../defences/presets.js';
import type { AttackReport } from './runner.js';

/** What the ablation study found for one scenario: its verdict on the full posture, and which removal let it through. */
export interface Dependence {
  id: string;
  /** the verdict against the full posture */
  full: string;
  /** the defences whose removal alone turned a blocked attack into a succeeded one */
  blockedBy: Ablation[];
  /** removals after which the scenario could not be judged (error): nothing is claimed for them */
  unjudged: Ablation[];
}

/**
 * Reads an ablation run (`attack simulate --ablate`): for each scenario blocked by the full
 * posture, the defences without which it succeeds. A scenario blocked whatever single defence is
 * removed is stopped by more than one (defence in depth) and lists none.
 */
export function dependences(report: AttackReport): Dependence[] {
  const ids = [...new Set(report.results.map((r) => r.id))];
  return ids.map((id) => {
    const rows = report.results.filter((r) => r.id === id);
    const full = rows.find((r) => !r.ablation)?.outcome ?? 'not run';
    const blockedBy: Ablation[] = [];
    const unjudged: Ablation[] = [];
    for (const r of rows) {
      if (!r.ablation || !r.without) continue;
      if (r.outcome !== 'blocked' && r.outcome !== 'succeeded') unjudged.push(...r.without);
      else if (full === 'blocked' && r.outcome === 'succeeded') blockedBy.push(...r.without);
    }
    return { id, full, blockedBy, unjudged };
  });
}

/** The finding in a few lines: which defence each scenario depends on. */
export function renderDependences(report: AttackReport): string {
  const deps = dependences(report);
  const width = Math.max(8, ...deps.map((d) => d.id.length));
  const lines = ['', `${'scenario'.padEnd(width)}  blocked by (removing it alone lets the attack succeed)`];
  for (const d of deps) {
    const what =
      d.full !== 'blocked'
        ? `not blocked by the full posture (${d.full})`
        : d.blockedBy.length > 0
          ? d.blockedBy.join(', ')
          : 'no single removable defence: what --without cannot remove, or several at once';
    const unjudged = d.unjudged.length ? `; not judged without ${d.unjudged.join(', ')}` : '';
    lines.push(`${d.id.padEnd(width)}  ${what}${unjudged}`);
  }
  return lines.join('\n');
}
