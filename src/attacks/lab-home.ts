import { readFile } from 'node:fs/promises';
import { TrustedMsError } from '../errors.js';
import type { LabState } from '../kernel/lab-state.js';

/** The lab's home, from the security service's own config (the scenario context does not carry it). */
export async function labHome(lab: LabState): Promise<string> {
  const part = lab.parts.find((p) => p.kind === 'security');
  const home = part
    ? (JSON.parse(await readFile(part.configFile, 'utf8')) as { home?: unknown }).home
    : undefined;
  if (typeof home !== 'string')
    throw new TrustedMsError('LAB_NOT_RUNNING', 'cannot find the lab home of its security service');
  return home;
}
