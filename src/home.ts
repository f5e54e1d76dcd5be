import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/** The lab home: `--home`, else `TRUSTED_MS_HOME`, else `.trusted-ms/` in the working folder. */
export function resolveLabHome(flag?: string, env: NodeJS.ProcessEnv = process.env): string {
  return resolve(flag ?? env.TRUSTED_MS_HOME ?? '.trusted-ms');
}

/** Where users' private keys live: `--key-dir`, else `TRUSTED_MS_KEYS`, else `~/.trusted-ms/keys`. */
export function resolveKeyDir(flag?: string, env: NodeJS.ProcessEnv = process.env): string {
  return resolve(flag ?? env.TRUSTED_MS_KEYS ?? join(homedir(), '.trusted-ms', 'keys'));
}
