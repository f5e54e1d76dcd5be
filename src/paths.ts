import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | undefined;

/**
 * The folder holding trusted-ms's package.json, found by walking up from this file, so that the
 * same code finds `fixtures/` and `lab/` whether it runs from `src/` (tsx) or `dist/src/`.
 */
export function packageRoot(): string {
  if (root !== undefined) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'package.json');
    if (existsSync(candidate) && JSON.parse(readFileSync(candidate, 'utf8')).name === 'trusted-ms') {
      root = dir;
      return dir;
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error('trusted-ms package root not found');
    dir = parent;
  }
}

/** trusted-ms's own version, from its package.json. */
export function packageVersion(): string {
  return JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')).version;
}

export function fixturePath(...parts: string[]): string {
  return join(packageRoot(), 'fixtures', ...parts);
}

export function labPath(...parts: string[]): string {
  return join(packageRoot(), 'lab', ...parts);
}
