import { join } from 'node:path';
import { TrustedMsError } from '../errors.js';
import { jsonRequest } from './http-client.js';
import { readSecret } from './part-config.js';
import type { Runtime } from './runtimes/runtime.js';
import { runtimeFor } from './runtimes/select.js';
import { type LabState, labDir, type PartState, requireLabState } from './state.js';

export interface ServiceAttestation {
  name: string;
  state: 'trusted' | 'untrusted' | 'unknown';
  expectedHash?: string;
  measuredHash?: string;
  measuredAt?: string;
  measuredBy?: 'runtime' | 'self';
  /** `service quarantine`: refused by the gateway and its peers whatever its state */
  quarantined?: boolean;
}

function pick(state: LabState, names: string[] | 'all'): PartState[] {
  const services = state.parts.filter((p) => p.kind === 'service');
  if (names === 'all') return services;
  return names.map((n) => {
    const part = services.find((p) => p.name === n);
    if (!part) {
      throw new TrustedMsError('SERVICE_NOT_FOUND', `no service named ${n} in this lab`, {
        actions: ['list them: trusted-ms service list'],
      });
    }
    return part;
  });
}

function labToken(home: string): string {
  return readSecret(join(labDir(home), 'lab-token'));
}

async function measureAll(runtime: Runtime, parts: PartState[]): Promise<{ name: string; hash: string }[]> {
  return Promise.all(parts.map(async (p) => ({ name: p.name, hash: await runtime.measure(p) })));
}

/** Records each service's current code hash as the expected one. */
export async function registerServices(
  home: string,
  names: string[] | 'all',
  runtime?: Runtime,
): Promise<ServiceAttestation[]> {
  const state = await requireLabState(home);
  const measured = await measureAll(runtime ?? (await runtimeFor(state.runtime)), pick(state, names));
  const res = await jsonRequest<{ services: ServiceAttestation[] }>(
    `${state.securityUrl}/v1/admin/services/register`,
    {
      token: labToken(home),
      body: { services: measured },
    },
  );
  return res.services;
}

/**
 * Measures services from outside (the runtime reads their code, not the services themselves),
 * reports to the security service, and returns what it concluded. The gateway is told at once.
 */
export async function verifyServices(
  home: string,
  names: string[] | 'all',
  runtime?: Runtime,
): Promise<{ services: ServiceAttestation[]; durationMs: number }> {
  const t0 = performance.now();
  const state = await requireLabState(home);
  const services = await verifyParts(home, state, pick(state, names), runtime);
  return { services, durationMs: performance.now() - t0 };
}

/** As verifyServices, for parts given as they are (a container not started yet, say). */
export async function verifyParts(
  home: string,
  state: LabState,
  parts: PartState[],
  runtime?: Runtime,
): Promise<ServiceAttestation[]> {
  const measured = await measureAll(runtime ?? (await runtimeFor(state.runtime)), parts);
  const res = await jsonRequest<{ services: ServiceAttestation[] }>(
    `${state.securityUrl}/v1/admin/attestations`,
    {
      token: labToken(home),
      body: { reports: measured },
    },
  );
  return res.services;
}

export async function listServices(home: string): Promise<ServiceAttestation[]> {
  const state = await requireLabState(home);
  const res = await jsonRequest<{ services: ServiceAttestation[] }>(`${state.securityUrl}/v1/services`);
  return res.services;
}
