import type { PartKind } from '../../kernel/lab-state.js';
import { CODE_DIR_ENV } from '../../kernel/part-config.js';

/**
 * A search path of the system's own folders: nothing of the lab looks a program up by name today
 * (Node is started by its absolute path), but a part that ever does must not find one in a folder
 * the CLI's user put first.
 */
export const PART_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * How the watchman reaches the Docker engine when the CLI was told by the environment
 * (dockerode reads these): it measures containers and must ask the same engine the CLI started
 * them on. Only the watchman gets them; none of them makes Node load code.
 */
export const ENGINE_VARIABLES = ['DOCKER_HOST', 'DOCKER_CERT_PATH', 'DOCKER_TLS_VERIFY'] as const;

/**
 * The complete environment of a lab part started as a local process: its config file, the
 * production mode, a fixed search path, a service's code copy, and for the watchman where the Docker engine is. Nothing
 * else is inherited from the CLI: `NODE_OPTIONS=--require=...`, `NODE_PATH`, a loader or an
 * `npm_config_*` in the CLI's environment would otherwise load code into every part that nobody
 * measured (issue 14).
 */
export function partEnvironment(
  part: { kind: PartKind; configFile: string; codeCopy?: string },
  cli: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  const env: Record<string, string> = {
    TMS_PART_CONFIG: part.configFile,
    NODE_ENV: 'production',
    PATH: PART_PATH,
    // A service started from its code copy reads its service.json there too (codeDirOf).
    ...(part.codeCopy === undefined ? {} : { [CODE_DIR_ENV]: part.codeCopy }),
  };
  if (part.kind === 'supervisor') {
    for (const name of ENGINE_VARIABLES) {
      const value = cli[name];
      if (value !== undefined && value !== '') env[name] = value;
    }
  }
  return env;
}
