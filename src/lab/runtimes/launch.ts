import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { LAUNCH_MANIFEST_SCHEMA, type LaunchManifest } from '../../attestation/launch-manifest.js';
import { measuredByRuntime } from '../../defences/attestation.js';
import type { PartKind } from '../../kernel/lab-state.js';
import type { PartConfig } from '../../kernel/part-config.js';
import { codeCopiesDir, copyDirFor } from './code-copy.js';
import { measuredStartArgv } from './measured-start.js';
import { partEnvironment } from './part-env.js';

/**
 * The interpreter's digest is the costly part of a manifest (the node binary is ~100 MB): hashed
 * once per process while the file keeps its device, inode, size and mtime (a binary replaced in
 * place gets a new inode or mtime, and so a new digest).
 */
const interpreters = new Map<string, { key: string; sha256: Promise<string> }>();

/** The interpreter a process part is started with: its path and the sha256 of its file. */
export async function interpreterOf(path: string = process.execPath): Promise<LaunchManifest['interpreter']> {
  const st = await stat(path);
  const key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
  let known = interpreters.get(path);
  if (known?.key !== key) {
    const sha256 = new Promise<string>((resolve, reject) => {
      const h = createHash('sha256');
      createReadStream(path)
        .on('data', (chunk) => h.update(chunk))
        .on('error', reject)
        .on('end', () => resolve(h.digest('hex')));
    });
    known = { key, sha256 };
    interpreters.set(path, known);
    sha256.catch(() => interpreters.delete(path));
  }
  return { path, sha256: await known.sha256 };
}

/** The complete environment of a part started as a process: the operator's pass-through, then its own. */
export function launchEnvironment(
  part: { kind: PartKind; configFile: string; env?: Record<string, string> },
  codeCopy?: string,
): Record<string, string> {
  // The pass-through first: it cannot replace what the part is given itself.
  return {
    ...part.env,
    ...partEnvironment({ kind: part.kind, configFile: part.configFile, ...(codeCopy ? { codeCopy } : {}) }),
  };
}

async function readConfig(configFile: string): Promise<PartConfig> {
  return JSON.parse(await readFile(configFile, 'utf8')) as PartConfig;
}

/**
 * Whether a service with this config is attested over its launch manifest: `attestation:measured`
 * only. A self-report (paper) is the service's hash of its own code, which knows no manifest.
 */
export async function attestsLaunch(configFile: string): Promise<boolean> {
  const config = await readConfig(configFile).catch(() => undefined);
  return config !== undefined && measuredByRuntime(config.defences?.attestation);
}

/** The manifest of a start with these arguments and environment, the config file as it is now. */
export async function launchManifest(start: {
  argv: string[];
  env: Record<string, string>;
  configFile: string;
}): Promise<LaunchManifest> {
  const [interpreter, config] = await Promise.all([interpreterOf(), readConfig(start.configFile)]);
  return {
    schema: LAUNCH_MANIFEST_SCHEMA,
    interpreter,
    argv: start.argv,
    env: start.env,
    config: config as unknown as Record<string, unknown>,
  };
}

/**
 * The manifest of a service's own start from the code whose tree hash is `codeHash`: its
 * `service.mjs` in the copy named by that hash, run from the measured bytes, its environment, its config file. What `lab up`
 * and `service register` register, and what a start of that code records.
 */
export function serviceManifest(
  part: { configFile: string; env?: Record<string, string> },
  codeHash: string,
): Promise<LaunchManifest> {
  // <lab>/parts/<part>.json: the lab's folder is two levels up.
  const copy = copyDirFor(codeCopiesDir(dirname(dirname(part.configFile))), codeHash);
  return launchManifest({
    argv: measuredStartArgv(copy, join(copy, 'service.mjs'), codeHash),
    env: launchEnvironment({ kind: 'service', ...part }, copy),
    configFile: part.configFile,
  });
}
