import { describe, expect, it } from 'vitest';
import { codeDirOf, type ServicePartConfig } from '../../../src/kernel/part-config.js';
import { PART_PATH, partEnvironment, passThrough } from '../../../src/lab/runtimes/part-env.js';

const hostile: NodeJS.ProcessEnv = {
  NODE_OPTIONS: '--require=/tmp/evil.cjs',
  NODE_PATH: '/tmp/evil',
  NODE_EXTRA_CA_CERTS: '/tmp/evil.pem',
  npm_config_node_options: '--import=/tmp/evil.mjs',
  LD_PRELOAD: '/tmp/evil.so',
  PATH: '/tmp/evil-bin:/usr/bin',
  HOME: '/root',
  DOCKER_HOST: 'unix:///run/user/1000/docker.sock',
  DOCKER_TLS_VERIFY: '',
};

describe('partEnvironment', () => {
  it('gives a part its config, production mode and the system search path, and nothing of the CLI', () => {
    for (const kind of ['security', 'gateway', 'sink', 'service'] as const) {
      expect(partEnvironment({ kind, configFile: '/lab/parts/x.json' }, hostile)).toEqual({
        TMS_PART_CONFIG: '/lab/parts/x.json',
        NODE_ENV: 'production',
        PATH: PART_PATH,
      });
    }
  });

  it('tells a service started from a code copy where the copy is', () => {
    expect(
      partEnvironment({ kind: 'service', configFile: '/p.json', codeCopy: '/lab/run/ab' }, hostile),
    ).toEqual({
      TMS_PART_CONFIG: '/p.json',
      NODE_ENV: 'production',
      PATH: PART_PATH,
      TMS_CODE_DIR: '/lab/run/ab',
    });
  });

  it('tells the watchman where the Docker engine is, as the CLI was told, and nothing more', () => {
    expect(
      partEnvironment({ kind: 'supervisor', configFile: '/lab/parts/supervisor.json' }, hostile),
    ).toEqual({
      TMS_PART_CONFIG: '/lab/parts/supervisor.json',
      NODE_ENV: 'production',
      PATH: PART_PATH,
      DOCKER_HOST: 'unix:///run/user/1000/docker.sock',
    });
  });
});

describe('codeDirOf', () => {
  const config = { appDir: '/lab/services/a/app' } as ServicePartConfig;
  it('is the code copy the runtime names, else the code folder', () => {
    expect(codeDirOf(config, { TMS_CODE_DIR: '/lab/run/ab' })).toBe('/lab/run/ab');
    expect(codeDirOf(config, {})).toBe('/lab/services/a/app');
    expect(codeDirOf(config, { TMS_CODE_DIR: '' })).toBe('/lab/services/a/app');
  });
});

describe('passThrough (lab up --part-env)', () => {
  it('passes exactly the named variables with their values, and nothing the CLI merely has', () => {
    expect(passThrough(['LD_PRELOAD'], { ...hostile, LD_PRELOAD: '/usr/lib/libfaketime.so.1' })).toEqual({
      LD_PRELOAD: '/usr/lib/libfaketime.so.1',
    });
    expect(passThrough([], hostile)).toEqual({});
  });

  it('refuses an unset name, a non-name and the variables a part is given itself', () => {
    const code = (names: string[]) => {
      try {
        passThrough(names, hostile);
      } catch (e) {
        return (e as { code?: string }).code;
      }
      return undefined;
    };
    expect(code(['FAKETIME'])).toBe('INVALID_INPUT');
    expect(code(['A=B'])).toBe('INVALID_INPUT');
    for (const own of ['PATH', 'TMS_PART_CONFIG', 'NODE_ENV', 'TMS_CODE_DIR'])
      expect(code([own])).toBe('INVALID_INPUT');
  });
});
