import { acceptsSelfReport } from '../../defences/attestation.js';
import type { Defences } from '../../defences/presets.js';
import { TrustedMsError } from '../../errors.js';
import { SERVICE_NAME_RE } from '../../pki/spiffe.js';
import type { AttestationState, ServiceRecord } from '../../store/schema.js';
import type { LabStore } from '../../store/store.js';

export interface ServiceStatus {
  name: string;
  state: AttestationState;
  expectedHash?: string;
  measuredHash?: string;
  measuredAt?: string;
  measuredBy?: 'runtime' | 'self';
  /**
   * This report measured a start of the service that has since been replaced (the restart that
   * replaced it said so in its own report): it changed nothing, and the status is the current one.
   */
  late?: true;
}

export interface AttestationReport {
  name: string;
  hash: string;
  by: 'runtime' | 'self';
  /** the start of the service that was measured (PartState.launch); absent for a self-report */
  launch?: string;
  /** the start this one replaced (a restart's own report): reports of it are dropped from now on */
  ends?: string;
}

/** Ended starts remembered per service: a late report is one round (seconds) behind, not more. */
const ENDED_LAUNCHES_KEPT = 8;

/**
 * The service registry: expected code hashes (in the store) and the latest measurement of each.
 * A measurement equal to the registered hash makes a service trusted; anything else untrusted;
 * a service with no registered hash is unknown. Kept in memory for the gateway's hot path and
 * written through to the store so `service list` sees it from any shell.
 */
export class ServiceRegistry {
  readonly #status = new Map<string, ServiceStatus>();

  constructor(
    private readonly store: LabStore,
    private readonly attestation: Defences['attestation'],
  ) {}

  async load(): Promise<void> {
    const data = await this.store.data();
    for (const record of Object.values(data.services)) this.#status.set(record.name, statusOf(record));
  }

  list(): ServiceStatus[] {
    return [...this.#status.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  get(name: string): ServiceStatus | undefined {
    return this.#status.get(name);
  }

  async register(entries: { name: string; hash: string }[]): Promise<ServiceStatus[]> {
    for (const { name } of entries) refuseNonServiceName(name);
    const at = this.store.now().toISOString();
    await this.store.update((data) => {
      for (const { name, hash } of entries) {
        const previous = Object.hasOwn(data.services, name) ? data.services[name] : undefined;
        data.services[name] = {
          name,
          expectedHash: hash,
          registeredAt: at,
          // still ended: a registration does not make a replaced start's late report current
          ...(previous?.endedLaunches ? { endedLaunches: previous.endedLaunches } : {}),
        };
        // Re-registering the hash just measured makes the service trusted again.
        if (previous?.attestation?.measuredHash === hash) {
          data.services[name].attestation = { ...previous.attestation, state: 'trusted' };
        }
      }
    });
    await this.load();
    return entries.map((e) => this.#status.get(e.name) as ServiceStatus);
  }

  /** Records measurements; returns each service's new status. */
  async report(reports: AttestationReport[]): Promise<ServiceStatus[]> {
    for (const { name } of reports) refuseNonServiceName(name);
    const at = this.store.now().toISOString();
    const late = new Set<string>();
    await this.store.update((data) => {
      for (const r of reports) {
        const record = Object.hasOwn(data.services, r.name) ? data.services[r.name] : undefined;
        if (record !== undefined && r.launch !== undefined) {
          // A watchman round can measure the old process (or container) just before a restart
          // replaces it and deliver after the restart's own report: that verdict is about a
          // program that no longer runs, and taking it would undo the new start's (the Docker
          // catalog once had a tampered service called trusted that way on a busy machine).
          if (record.endedLaunches?.includes(r.launch)) {
            late.add(r.name);
            continue;
          }
        }
        // Only the start that replaced one says it ended (a restart knows what it stopped): a late
        // report must never end the start that runs now.
        if (record !== undefined && r.ends !== undefined && r.ends !== r.launch) {
          const ended = (record.endedLaunches ?? []).filter((l) => l !== r.ends);
          record.endedLaunches = [...ended, r.ends].slice(-ENDED_LAUNCHES_KEPT);
        }
        const state: AttestationState =
          record === undefined ? 'unknown' : record.expectedHash === r.hash ? 'trusted' : 'untrusted';
        if (record)
          record.attestation = {
            state,
            measuredHash: r.hash,
            measuredAt: at,
            measuredBy: r.by,
            ...(r.launch !== undefined ? { launch: r.launch } : {}),
          };
      }
    });
    await this.load();
    for (const r of reports) {
      if (!this.#status.has(r.name)) {
        this.#status.set(r.name, {
          name: r.name,
          state: 'unknown',
          measuredHash: r.hash,
          measuredAt: at,
          measuredBy: r.by,
        });
      }
    }
    return reports.map((r) => {
      const status = this.#status.get(r.name) as ServiceStatus;
      return late.has(r.name) ? { ...status, late: true } : status;
    });
  }

  /** attestation:self: a service vouches for itself; otherwise only outside measurements count. */
  acceptsSelfReports(): boolean {
    return acceptsSelfReport(this.attestation);
  }
}

function statusOf(record: ServiceRecord): ServiceStatus {
  const a = record.attestation;
  return {
    name: record.name,
    state: a?.state ?? 'unknown',
    expectedHash: record.expectedHash,
    ...(a ? { measuredHash: a.measuredHash, measuredAt: a.measuredAt, measuredBy: a.measuredBy } : {}),
  };
}

/**
 * The names of the lab's parts that are not services: no service is registered, or issued an
 * identity, under one. The red team had the admin API issue a service-kind certificate named
 * `gateway` and counted it as the gateway's revocation confirmation.
 */
export const NON_SERVICE_PART_NAMES: readonly string[] = [
  'gateway',
  'security',
  'supervisor',
  'sink',
  'attacker',
];

/**
 * A service name is what its certificate, the attestation table and the revocation list can carry
 * (SERVICE_NAME_RE), and not a part's. Checked before anything is stored: the second red team
 * registered "X", answered 400 after the record was written, and from then on the revocation list
 * did not parse (no revoke, no renewal, a security service that died at every start).
 */
export function refuseNonServiceName(name: string): void {
  if (typeof name !== 'string' || !SERVICE_NAME_RE.test(name)) {
    throw new TrustedMsError(
      'INVALID_NAME',
      `"${String(name).slice(0, 64)}" is not a service name: lowercase letters, digits and '-', starting with a letter, at most 63`,
      { actions: [`pick a name matching ${SERVICE_NAME_RE.source}`] },
    );
  }
  if (NON_SERVICE_PART_NAMES.includes(name)) {
    throw new TrustedMsError('INVALID_NAME', `"${name}" names a part of the lab that is not a service`, {
      actions: [`pick a service name other than ${NON_SERVICE_PART_NAMES.join(', ')}`],
    });
  }
}
