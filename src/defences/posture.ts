import { TrustedMsError } from '../errors.js';

/** The three ways the lab can run the same services (DESIGN.md, "Postures"). */
export const POSTURES = ['none', 'paper', 'trusted'] as const;
export type Posture = (typeof POSTURES)[number];

export function parsePosture(value: string): Posture {
  if ((POSTURES as readonly string[]).includes(value)) return value as Posture;
  throw new TrustedMsError('INVALID_INPUT', `posture must be one of ${POSTURES.join(', ')}`);
}
