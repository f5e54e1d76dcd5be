import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { credentialDigest, type PartCredentialIndex } from '../kernel/part-credential.js';

/** Where a part's own credential is kept (one file per part, so a container mounts only its own). */
export function partCredentialFileOf(dir: string, part: string): string {
  return join(dir, 'credentials', `${part}.secret`);
}

/** The security service's index of every part's credential digest. */
export function partCredentialIndexFileOf(dir: string): string {
  return join(dir, 'credentials', 'index.json');
}

/**
 * Makes a fresh random credential for each part (0600, in a 0700 folder) and the index the
 * security service maps them with; at every `lab up`, like the lab's other secrets.
 */
export async function createPartCredentials(dir: string, parts: readonly string[]): Promise<void> {
  const index: PartCredentialIndex = { parts: {} };
  await mkdir(dirname(partCredentialIndexFileOf(dir)), { recursive: true, mode: 0o700 });
  for (const part of parts) {
    const secret = randomBytes(32).toString('base64url');
    await writeFile(partCredentialFileOf(dir, part), `${secret}\n`, { mode: 0o600, flag: 'wx' });
    index.parts[part] = credentialDigest(secret);
  }
  await writeFile(partCredentialIndexFileOf(dir), `${JSON.stringify(index)}\n`, { mode: 0o600, flag: 'wx' });
}
