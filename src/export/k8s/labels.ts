import type { PlannedPart } from '../../lab/plan.js';

/** The namespace every exported object lives in. */
export const NAMESPACE = 'trusted-ms';

/** The label a part's pods are selected by: in Deployments, Services, budgets and policies alike. */
export const PART_LABEL = 'app.kubernetes.io/name';

export function selectorOf(part: string): Record<string, string> {
  return { [PART_LABEL]: part, 'app.kubernetes.io/part-of': 'trusted-ms' };
}

export function labelsOf(part: PlannedPart): Record<string, string> {
  return {
    ...selectorOf(part.config.part),
    'app.kubernetes.io/component': part.config.kind,
    'trusted-ms.posture': part.config.posture,
  };
}
