import type { LabState, PartState } from '../../../src/kernel/lab-state.js';

/**
 * Polls until `check` gives a value (not undefined), or fails after `timeoutMs`. The bound is a
 * functional deadline taken from the lab's own settings (a backoff, a server timeout), not a
 * performance claim.
 */
export async function waitFor<T>(
  what: string,
  timeoutMs: number,
  check: () => Promise<T | undefined>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function partNamed(state: LabState, name: string): PartState {
  const part = state.parts.find((p) => p.name === name);
  if (part === undefined) throw new Error(`no part ${name} in lab ${state.labId}`);
  return part;
}
