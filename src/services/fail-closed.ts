import { isTrustedMsError } from '../errors.js';

/**
 * A part's start-up step that must succeed before it serves anyone (the ticket keys, the revocation
 * list): on failure the part says why in one line, with the refusal's code, and exits without
 * serving, rather than crash with a stack or serve without what it needs.
 */
export async function orFailClosed<T>(part: string, step: Promise<T>): Promise<T> {
  try {
    return await step;
  } catch (err) {
    const code = isTrustedMsError(err) ? err.code : 'INTERNAL';
    console.error(`${part}: not starting: ${code}: ${(err as Error).message}`);
    process.exit(1);
  }
}
