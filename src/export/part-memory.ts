import type { PartKind } from '../kernel/lab-state.js';

/** What a part is given: a request the scheduler reserves, and a limit it is stopped past. */
export interface PartMemory {
  requestMiB: number;
  limitMiB: number;
  /** where the request comes from, written beside it in the exported files */
  source: string;
}

/**
 * A sample service: ~40 MiB per service container, measured by `npm run bench:docker` (docker
 * stats of a 20-service Docker lab; README, the paragraph on the Docker runtime); a lab client
 * container, a program of the same size, used 35.6 MiB on average, 39.7 MiB at most (README,
 * `--client-containers 150`).
 * The security service and the gateway were not measured apart: they hold the store, the 150
 * users' sessions and replay caches, so they get half again on top of a service, as an
 * estimate, and say so. The limit is the one the lab's client containers run under (256 MiB).
 */
const MEMORY: Readonly<Record<'service' | 'security' | 'gateway', PartMemory>> = {
  service: {
    requestMiB: 40,
    limitMiB: 256,
    source: 'measured: ~40 MiB per service container (bench:docker)',
  },
  security: { requestMiB: 64, limitMiB: 256, source: 'estimated: not measured apart from the services' },
  gateway: { requestMiB: 64, limitMiB: 256, source: 'estimated: not measured apart from the services' },
};

export function partMemory(kind: PartKind): PartMemory {
  if (kind === 'service' || kind === 'security' || kind === 'gateway') return MEMORY[kind];
  throw new Error(`no memory figure for a ${kind}: it is not exported`);
}
