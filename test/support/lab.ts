import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { login } from '../../src/client/login.js';
import type { Session } from '../../src/client/session.js';
import { loadPrivateKeyFile, privateKeyPath } from '../../src/crypto/keys.js';
import type { Posture } from '../../src/defences/posture.js';
import { trustLabEdge } from '../../src/kernel/edge-client.js';
import type { LabState } from '../../src/kernel/lab-state.js';
import { labDown } from '../../src/lab/down.js';
import { startLab as startRunningLab } from '../../src/lab/running-lab.js';
import type { Runtime } from '../../src/lab/runtimes/runtime.js';
import type { LabUpOptions } from '../../src/lab/up.js';
import { openLabStore } from '../../src/store/open.js';
import { openUserAdmin } from '../../src/users/admin.js';
import { keygenForUser } from '../../src/users/keygen.js';

export interface TestUser {
  name: string;
  role: string;
  password: string;
  type: 'ed25519' | 'rsa';
}

/** alice is admin, bob an analyst: enough to show a role refused outside its databases. */
export const TEST_USERS: TestUser[] = [
  { name: 'alice', role: 'admin', password: 'alice-pw', type: 'rsa' },
  { name: 'bob', role: 'analyst', password: 'bob-pw', type: 'rsa' },
  { name: 'erin', role: 'clerk', password: 'erin-pw', type: 'ed25519' },
];

export interface RunningLab extends AsyncDisposable {
  home: string;
  keys: string;
  state: LabState;
  login(user: string, opts?: { password?: string; keyOf?: string }): Promise<Session>;
}

/**
 * A real lab (processes, or containers with a Docker runtime) in a temp home, with the test users and their keys; taken down
 * and removed by `await using`, even when an assertion fails.
 */
export async function startLab(
  posture: Posture,
  services = 20,
  runtime?: Runtime,
  extra: Pick<LabUpOptions, 'identityTtlSeconds' | 'feedMaxAgeSeconds' | 'without'> = {},
): Promise<RunningLab> {
  const dir = await mkdtemp(join(tmpdir(), `tms-lab-${posture}-`));
  const home = join(dir, 'home');
  const keys = join(dir, 'keys');
  const admin = await openUserAdmin(home);
  for (const u of TEST_USERS) {
    await admin.addUser({ name: u.name, role: u.role, password: u.password });
    await keygenForUser(admin, { user: u.name, type: u.type, keyDir: keys, force: false });
  }
  let lab: Awaited<ReturnType<typeof startRunningLab>>;
  try {
    lab = await startRunningLab({
      home,
      posture,
      services,
      auditKeyDir: keys,
      ...(runtime ? { runtime } : {}),
      ...extra,
    });
  } catch (err) {
    await labDown(home, runtime).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const { state } = lab;
  // Whatever the test sends to the gateway without a dispatcher of its own checks it with the lab CA (edge:tls).
  await trustLabEdge(state);
  return {
    home,
    keys,
    state,
    async login(user, opts = {}) {
      const u = TEST_USERS.find((t) => t.name === user);
      const key = await loadPrivateKeyFile(privateKeyPath(keys, opts.keyOf ?? user));
      return (await login(state, user, opts.password ?? u?.password ?? '', key)).session;
    },
    async [Symbol.asyncDispose]() {
      await lab.down();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export { openLabStore };
