import { TrustedMsError } from '../../errors.js';
import type { PartKind } from '../../kernel/lab-state.js';
import { CODE_DIR_ENV, DEFINITION_VARIABLE } from '../../kernel/part-config.js';

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
    // A service started from its code copy: what a self-report (paper) hashes (codeDirOf).
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

/**
 * What the part is given itself: a pass-through may not name these (the definition is set inside
 * a service's process from its measured bytes, measured-start.ts).
 */
export const OWN_VARIABLES = [
  'TMS_PART_CONFIG',
  'NODE_ENV',
  'PATH',
  CODE_DIR_ENV,
  DEFINITION_VARIABLE,
] as const;

/**
 * `lab up --part-env NAME`: each named variable of the CLI's environment, with its value, for every
 * part. A command-line choice, not an environment one: whoever can only set the CLI's environment
 * (`NODE_OPTIONS`, `LD_PRELOAD`) cannot also choose to pass it. Refused: an unset name, a name
 * that is not a variable name, and the variables the part is given itself.
 */
export function passThrough(
  names: readonly string[],
  cli: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of names) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      throw new TrustedMsError('INVALID_INPUT', `--part-env ${JSON.stringify(name)} is not a variable name`);
    }
    if ((OWN_VARIABLES as readonly string[]).includes(name)) {
      throw new TrustedMsError('INVALID_INPUT', `--part-env ${name}: every part is given its own ${name}`);
    }
    const value = cli[name];
    if (value === undefined) {
      throw new TrustedMsError('INVALID_INPUT', `--part-env ${name}: ${name} is not set in this environment`);
    }
    env[name] = value;
  }
  return env;
}
