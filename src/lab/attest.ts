import { isTrustedMsError, TrustedMsError } from '../errors.js';
import { adminChannel } from '../kernel/admin-channel.js';
import { type LabState, type PartState, readLabState, requireLabState } from '../kernel/lab-state.js';
import type { ServiceIdentity } from '../pki/spiffe.js';
import type { Runtime } from './runtimes/runtime.js';
import { runtimeFor } from './runtimes/select.js';
import type { UnmeasuredHolder } from './supervisor/renewal.js';

export interface ServiceAttestation {
  name: string;
  state: 'trusted' | 'untrusted' | 'unknown';
  expectedHash?: string;
  measuredHash?: string;
  measuredAt?: string;
  measuredBy?: 'runtime' | 'self';
  /** `service quarantine`: refused by the gateway and its peers whatever its state */
  quarantined?: boolean;
  /**
   * Not measured this time (its container was being removed or replaced, or the engine could not
   * read it): no verdict was reported, the service keeps the state it had. Why, in a few words.
   */
  deferred?: string;
  /**
   * The security service dropped this measurement: a later start of the service had been reported
   * by then (a restart while the round measured), so it was about a program that no longer runs.
   */
  late?: true;
  /**
   * Untrusted: which parts of what runs differ from what was registered, as the runtime tells
   * (`code`, `interpreter`, `argv`, `env.<NAME>`, `config.<key>`, `readback.exe`,
   * `readback.cmdline`, `readback.environ.<NAME>`; Runtime.explain).
   */
  differs?: string[];
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

interface Measured {
  /**
   * `launch`: the start measured (PartState.launch); `ends`: the start it replaced, when this is a
   * restart's own measurement. The security service drops a report of an ended start delivered late.
   */
  measured: { name: string; hash: string; launch?: string; ends?: string }[];
  deferred: { name: string; reason: string }[];
}

/**
 * Every part measured at once. A part that is not measurable right now (MEASUREMENT_DEFERRED: its
 * container is being replaced) is tried once more after a pause and otherwise left out, so that
 * one replacement under way neither fails the round for the others nor counts as a verdict.
 */
async function measureAll(
  runtime: Runtime,
  parts: PartState[],
  fresh?: (name: string) => Promise<PartState | undefined>,
  replaced?: PartState,
): Promise<Measured> {
  const out: Measured = { measured: [], deferred: [] };
  await Promise.all(
    parts.map(async (given) => {
      let p = given;
      // With the lab state to read again, a record whose process is gone (a restart under way) is
      // looked up again for a few seconds: the restart writes the new process there, or the
      // watchman brings it back (1 s after its death) and does.
      const attempts = fresh ? 5 : 2;
      for (let attempt = 1; ; attempt++) {
        try {
          const hash = await runtime.measure(p);
          const ends = replaced?.name === p.name ? replaced.launch : undefined;
          out.measured.push({
            name: p.name,
            hash,
            ...(p.launch ? { launch: p.launch } : {}),
            ...(ends !== undefined && ends !== p.launch ? { ends } : {}),
          });
          return;
        } catch (err) {
          if (!isTrustedMsError(err, 'MEASUREMENT_DEFERRED')) throw err;
          if (attempt >= attempts) {
            out.deferred.push({ name: p.name, reason: err.message });
            return;
          }
          await new Promise((r) => setTimeout(r, 1000));
          p = (await fresh?.(p.name)) ?? p;
        }
      }
    }),
  );
  return out;
}

function requireMeasured(m: Measured): { name: string; hash: string }[] {
  if (m.deferred.length === 0) return m.measured;
  throw new TrustedMsError('MEASUREMENT_DEFERRED', m.deferred.map((d) => d.reason).join('; '), {
    actions: ['try again in a moment'],
  });
}

/** Records each service's current code hash as the expected one. */
export async function registerServices(
  home: string,
  names: string[] | 'all',
  runtime?: Runtime,
): Promise<ServiceAttestation[]> {
  const state = await requireLabState(home);
  return registerParts(home, state, pick(state, names), runtime);
}

/**
 * As registerServices, for parts given as they are (a service about to be started with another
 * config or pass-through). It is the code deployed in the folder that is registered, not the copy
 * running now (a restart runs it), with the launch manifest of the service's own start, not the one
 * of the process running now.
 */
export async function registerParts(
  home: string,
  state: LabState,
  parts: PartState[],
  runtime?: Runtime,
): Promise<ServiceAttestation[]> {
  // Registering records a known-good hash: every named service must have been measured.
  const deployed = parts.map(({ codeCopy: _, manifest: __, ...p }) => p);
  const measured = requireMeasured(await measureAll(runtime ?? (await runtimeFor(state.runtime)), deployed));
  const admin = await adminChannel(home, state);
  const res = await admin.call<{ services: ServiceAttestation[] }>('/v1/admin/services/register', {
    body: { services: measured.map(({ name, hash }) => ({ name, hash })) },
  });
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
  // The parts as the state file names them now: a record whose process is gone is read again.
  const fresh = async (name: string): Promise<PartState | undefined> => {
    const now = await readLabState(home).catch(() => undefined);
    return now?.labId === state.labId
      ? now.parts.find((p) => p.name === name && p.kind === 'service')
      : undefined;
  };
  const { services } = await measureAndReport(home, state, pick(state, names), false, runtime, fresh);
  return { services, durationMs: performance.now() - t0 };
}

/** As verifyServices, for parts given as they are (a container not started yet, say). */
export async function verifyParts(
  home: string,
  state: LabState,
  parts: PartState[],
  runtime?: Runtime,
): Promise<ServiceAttestation[]> {
  return (await measureAndReport(home, state, parts, false, runtime)).services;
}

/**
 * A restart's own measurement of the start it made (before it runs, and as it runs): as
 * verifyParts, naming the start it replaced, so that a measurement of that one (a watchman round
 * that read the old process just before it stopped) delivered after this is dropped.
 */
export async function verifyRestart(
  home: string,
  state: LabState,
  next: PartState,
  replaced: PartState,
  runtime?: Runtime,
): Promise<ServiceAttestation | undefined> {
  const { services } = await measureAndReport(home, state, [next], false, runtime, undefined, replaced);
  return services[0];
}

/**
 * As verifyParts, and (links:mtls) a new identity for each part whose measurement just passed and
 * that is not quarantined: the security service decides, from this very measurement. What the
 * watchman's renewals ask (src/lab/supervisor/renewal.ts).
 */
export async function verifyPartsForIdentity(
  home: string,
  state: LabState,
  parts: PartState[],
  runtime?: Runtime,
): Promise<{ services: ServiceAttestation[]; identities: Record<string, ServiceIdentity> }> {
  return measureAndReport(home, state, parts, true, runtime);
}

async function measureAndReport(
  home: string,
  state: LabState,
  parts: PartState[],
  issueIdentity: boolean,
  runtime?: Runtime,
  fresh?: (name: string) => Promise<PartState | undefined>,
  replaced?: PartState,
): Promise<{ services: ServiceAttestation[]; identities: Record<string, ServiceIdentity> }> {
  const rt = runtime ?? (await runtimeFor(state.runtime));
  const { measured, deferred } = await measureAll(rt, parts, fresh, replaced);
  const reported =
    measured.length === 0
      ? { services: [], identities: {} }
      : await (await adminChannel(home, state)).call<{
          services: ServiceAttestation[];
          identities?: Record<string, ServiceIdentity>;
        }>('/v1/admin/attestations', {
          body: { reports: measured, ...(issueIdentity ? { issueIdentity } : {}) },
        });
  return {
    services: [
      ...(await Promise.all(reported.services.map((s) => explained(rt, parts, s)))),
      ...deferred.map((d): ServiceAttestation => ({ name: d.name, state: 'unknown', deferred: d.reason })),
    ],
    identities: reported.identities ?? {},
  };
}

/** links:mtls: a new identity for the gateway (not a measured part: the security service issues it as asked). */
export async function renewUnmeasuredIdentity(
  home: string,
  state: LabState,
  kind: UnmeasuredHolder,
): Promise<ServiceIdentity> {
  return (await adminChannel(home, state)).call<ServiceIdentity>(`/v1/admin/identities/${kind}`, {
    method: 'POST',
  });
}

/** An untrusted service's verdict with the fields that differ; any other as it is. */
async function explained(
  runtime: Runtime,
  parts: PartState[],
  service: ServiceAttestation,
): Promise<ServiceAttestation> {
  const part = parts.find((p) => p.name === service.name);
  if (service.state !== 'untrusted' || part === undefined) return service;
  const differs = runtime.explain ? await runtime.explain(part, service.expectedHash) : ['code'];
  return { ...service, differs };
}

export async function listServices(home: string): Promise<ServiceAttestation[]> {
  const state = await requireLabState(home);
  const res = await (await adminChannel(home, state)).read<{ services: ServiceAttestation[] }>(
    '/v1/services',
  );
  return res.services;
}
