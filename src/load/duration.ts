import { TrustedMsError } from '../errors.js';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000 };

/** `10s`, `1.5s`, `500ms`, `2m`, or a bare number of seconds, in milliseconds. */
export function parseDuration(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$/.exec(text);
  if (m === null) {
    throw new TrustedMsError('INVALID_INPUT', `cannot read the duration ${JSON.stringify(text)}`, {
      actions: ['write it as 10s, 1.5s, 500ms or 2m'],
    });
  }
  return Math.round(Number(m[1]) * (UNITS[m[2] ?? 's'] as number));
}
