import { TrustedMsError } from '../errors.js';
import type { RuntimeKind } from '../kernel/lab-state.js';
import type { StoreChoice } from './lab-store.js';

/** `lab up --security-replicas` without the flag. */
export const DEFAULT_SECURITY_REPLICAS = 1;
/** Enough to show the failover; each replica holds a pool of store connections and a key. */
export const MAX_SECURITY_REPLICAS = 5;

/** The first replica keeps the security service's own name, so a one-replica lab is unchanged. */
export function securityPartName(index: number): string {
  return index === 0 ? 'security' : `security-${index + 1}`;
}

/**
 * Refuses replicas a lab cannot have: several security services need a store they can all write
 * and share logins in (PostgreSQL; the files have one writer), and the Docker runtime does not
 * start them yet (a later slice of issue 17).
 */
export function checkSecurityReplicas(replicas: number, store: StoreChoice, runtimeKind: RuntimeKind): void {
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > MAX_SECURITY_REPLICAS) {
    throw new TrustedMsError(
      'USAGE',
      `--security-replicas must be 1-${MAX_SECURITY_REPLICAS}, not ${replicas}`,
    );
  }
  if (replicas === 1) return;
  if (runtimeKind !== 'process') {
    throw new TrustedMsError(
      'RUNTIME_UNSUPPORTED',
      `--security-replicas above 1 is not built for the ${runtimeKind} runtime yet (a later slice of issue 17)`,
      { actions: ['use --runtime process --store postgres'] },
    );
  }
  if (store.kind !== 'postgres') {
    throw new TrustedMsError(
      'REPLICAS_NEED_SHARED_STORE',
      `--security-replicas ${replicas} needs --store postgres: the lab home's files have one writer, and replicas share logins and changes through the store`,
      { actions: [`trusted-ms lab up --store postgres --security-replicas ${replicas}`] },
    );
  }
}
