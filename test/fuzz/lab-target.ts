import { request } from 'undici';
import type { Posture } from '../../src/defences/posture.js';
import { type RunningLab, startLab, TEST_USERS } from '../support/lab.js';
import { type FuzzTarget, readLabToken } from './http-fuzz.js';

/** A real process lab with every test user logged in, and what the fuzzer needs to know about it. */
export async function startFuzzLab(
  posture: Posture,
  services = 2,
): Promise<{ lab: RunningLab; target: FuzzTarget }> {
  const lab = await startLab(posture, services);
  try {
    const sessions = [];
    for (const u of TEST_USERS) {
      if (posture === 'paper' && u.type !== 'rsa') continue;
      sessions.push(await lab.login(u.name));
    }
    const keys = await request(`${lab.state.securityUrl}/v1/keys`);
    const { keys: list } = (await keys.body.json()) as { keys: { publicKeyPem: string }[] };
    return {
      lab,
      target: {
        state: lab.state,
        labToken: readLabToken(lab.state),
        sessions,
        publicKeyPem: list[0]?.publicKeyPem ?? '',
      },
    };
  } catch (err) {
    await lab[Symbol.asyncDispose]();
    throw err;
  }
}
