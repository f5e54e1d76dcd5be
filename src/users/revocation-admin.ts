import { TrustedMsError } from '../errors.js';
import { adminChannel, requireAnswer } from '../kernel/admin-channel.js';
import { readLabState } from '../kernel/lab-state.js';
import { labTopology } from '../kernel/topology.js';
import { homeLabClockAtFirstUse } from '../store/lab-clock-mark.js';
import { openLabStore } from '../store/open.js';
import {
  type QuarantineResult,
  quarantineIn,
  reinstateUserIn,
  releaseIn,
  revokeUserIn,
  type UserRevocationResult,
} from './revocations.js';
import { storeWriter } from './store-writer.js';

/**
 * Where `user revoke|reinstate` and `service quarantine|release` go: through the security service's
 * admin API while the lab runs (it is the store's only writer, and it tells the gateway and the
 * services before answering), else straight to the store, in force from the lab's next start.
 */
export interface RevocationAdmin {
  readonly via: 'store' | 'security-service';
  revokeUser(name: string): Promise<UserRevocationResult>;
  reinstateUser(name: string): Promise<UserRevocationResult>;
  quarantine(name: string): Promise<QuarantineResult>;
  release(name: string): Promise<QuarantineResult>;
}

export async function openRevocationAdmin(home: string): Promise<RevocationAdmin> {
  const state = await readLabState(home);
  // A service name must be one of the running lab's services, or of the topology when none runs.
  const known = state
    ? state.parts.filter((p) => p.kind === 'service').map((p) => p.name)
    : labTopology().services.map((s) => s.name);
  const requireService = (name: string): void => {
    if (!known.includes(name)) {
      throw new TrustedMsError('SERVICE_NOT_FOUND', `no service named ${name.slice(0, 64)} in this lab`, {
        actions: ['list them: trusted-ms service list'],
      });
    }
  };
  if (state) {
    if ((await storeWriter(home, state)) === 'security-service') {
      const admin = await adminChannel(home, state);
      const call = async <T>(path: string, verb: string, fields: Parameters<typeof requireAnswer>[1]) =>
        requireAnswer<T>(await admin.call(path, { method: 'POST', body: {} }), fields, verb);
      const user = (name: string, verb: string) =>
        call<UserRevocationResult>(`/v1/admin/users/${encodeURIComponent(name)}/${verb}`, verb, {
          user: 'string',
          revoked: 'boolean',
          notBefore: 'number',
          changed: 'boolean',
        });
      const service = (name: string, verb: string) => {
        requireService(name);
        return call<QuarantineResult>(`/v1/admin/services/${encodeURIComponent(name)}/${verb}`, verb, {
          service: 'string',
          quarantined: 'boolean',
          changed: 'boolean',
        });
      };
      return {
        via: 'security-service',
        revokeUser: (name) => user(name, 'revoke'),
        reinstateUser: (name) => user(name, 'reinstate'),
        quarantine: (name) => service(name, 'quarantine'),
        release: (name) => service(name, 'release'),
      };
    }
  }
  const store = openLabStore(home, { now: homeLabClockAtFirstUse(home) });
  return {
    via: 'store',
    revokeUser: (name) => revokeUserIn(store, name, 'cli'),
    reinstateUser: (name) => reinstateUserIn(store, name, 'cli'),
    quarantine: async (name) => {
      requireService(name);
      return quarantineIn(store, name, 'cli');
    },
    release: async (name) => {
      requireService(name);
      return releaseIn(store, name, 'cli');
    },
  };
}
