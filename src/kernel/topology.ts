import { readFileSync } from 'node:fs';
import {
  DEFAULT_PEER_CALLS,
  EVERY_EDGE,
  type PeerCallRules,
  parsePeerCalls,
} from '../defences/peer-calls.js';
import { TrustedMsError } from '../errors.js';
import { labPath } from '../paths.js';

export type DbRecord = { id: string } & Record<string, unknown>;

export interface ServiceDefinition {
  name: string;
  description: string;
  /** database name → seed records */
  databases: Record<string, DbRecord[]>;
  /** services this one calls, passing the user's ticket on */
  calls: string[];
}

export interface Topology {
  version: 1;
  services: ServiceDefinition[];
  /** what a service may ask of a peer it calls, by edge (the per-edge peer policy, enforced by the peer) */
  peerCalls: PeerCallRules;
}

const NAME = /^[a-z][a-z0-9-]{0,30}$/;

/** Validates a topology: unique names, known callees, no cycles (a call chain must end). */
export function parseTopology(doc: unknown): Topology {
  const t = doc as Partial<Topology> | null;
  if (t?.version !== 1 || !Array.isArray(t.services)) {
    throw new TrustedMsError('INVALID_INPUT', 'a topology needs "version": 1 and a "services" array');
  }
  const byName = new Map<string, ServiceDefinition>();
  const owner = new Map<string, string>();
  for (const s of t.services) {
    if (typeof s?.name !== 'string' || !NAME.test(s.name)) {
      throw new TrustedMsError('INVALID_INPUT', `service name ${JSON.stringify(s?.name)} must match ${NAME}`);
    }
    if (byName.has(s.name)) throw new TrustedMsError('INVALID_INPUT', `duplicate service ${s.name}`);
    if (!Array.isArray(s.calls) || s.calls.length > 2) {
      throw new TrustedMsError('INVALID_INPUT', `${s.name}: calls must list 0-2 services`);
    }
    for (const [db, records] of Object.entries(s.databases ?? {})) {
      if (owner.has(db)) throw new TrustedMsError('INVALID_INPUT', `database ${db} owned twice`);
      owner.set(db, s.name);
      if (!Array.isArray(records) || records.some((r) => typeof r?.id !== 'string')) {
        throw new TrustedMsError('INVALID_INPUT', `${s.name}: every record of ${db} needs a string id`);
      }
    }
    byName.set(s.name, s);
  }
  for (const s of byName.values()) {
    for (const callee of s.calls) {
      if (!byName.has(callee)) throw new TrustedMsError('INVALID_INPUT', `${s.name} calls unknown ${callee}`);
    }
  }
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string, path: string[]): void => {
    if (state.get(name) === 'done') return;
    if (state.get(name) === 'visiting') {
      throw new TrustedMsError('INVALID_INPUT', `call cycle: ${[...path, name].join(' → ')}`);
    }
    state.set(name, 'visiting');
    for (const callee of byName.get(name)?.calls ?? []) visit(callee, [...path, name]);
    state.set(name, 'done');
  };
  for (const name of byName.keys()) visit(name, []);
  const peerCalls =
    t.peerCalls === undefined
      ? { [EVERY_EDGE]: DEFAULT_PEER_CALLS }
      : parsePeerCalls(t.peerCalls, 'the topology', (caller, callee) =>
          Boolean(byName.get(caller)?.calls.includes(callee)),
        );
  return { version: 1, services: [...byName.values()], peerCalls };
}

let cached: Topology | undefined;

/** The lab's 20 services, from `lab/topology.json`. */
export function labTopology(): Topology {
  cached ??= parseTopology(JSON.parse(readFileSync(labPath('topology.json'), 'utf8')));
  return cached;
}

/** The first `count` services, plus everything they call, so a smaller lab still works. */
export function selectServices(topology: Topology, count: number): ServiceDefinition[] {
  const byName = new Map(topology.services.map((s) => [s.name, s]));
  const chosen = new Set<string>();
  const add = (name: string): void => {
    if (chosen.has(name)) return;
    chosen.add(name);
    for (const callee of byName.get(name)?.calls ?? []) add(callee);
  };
  for (const s of topology.services.slice(0, Math.max(0, count))) add(s.name);
  return topology.services.filter((s) => chosen.has(s.name));
}

/** Which service owns a database. */
export function databaseOwner(topology: Topology, database: string): string | undefined {
  return topology.services.find((s) => Object.hasOwn(s.databases, database))?.name;
}
