import { readFile } from 'node:fs/promises';
import { errnoCode, TrustedMsError } from '../errors.js';
import type { ServiceDefinition } from '../kernel/topology.js';
import { evaluate } from '../policy/evaluate.js';
import { ACTIONS, type Action, type Role } from '../policy/types.js';

/** One kind of request the virtual users send, and how often relative to the others. */
export interface MixEntry {
  service: string;
  database: string;
  action: Action;
  weight: number;
}

/**
 * What the load sends: the roles the virtual users get (round-robin) and the weighted requests.
 * Each user draws only among the entries its role may do, so a healthy run has no refusals; an
 * entry no role may do is an error in the mix, not load.
 */
export interface Mix {
  roles: string[];
  requests: MixEntry[];
}

/** Relative weights of the default mix: mostly reads, some queries, a few writes. */
const DEFAULT_WEIGHTS: Record<Action, number> = { read: 6, query: 3, write: 1 };

const MAX_ENTRIES = 1000;

function invalid(message: string): TrustedMsError {
  return new TrustedMsError('INVALID_INPUT', `load mix: ${message}`, {
    actions: [
      'a mix is JSON: {"roles": ["analyst"], "requests": [{"service": "orders", "database": "orders", "action": "read", "weight": 3}]}',
    ],
  });
}

/**
 * The default mix over the lab's services: every database of every service, each action that at
 * least one of the lab's roles may do, weighted 6 read / 3 query / 1 write; every role that may do
 * something in it.
 */
export function defaultMix(services: readonly ServiceDefinition[], roles: Record<string, Role>): Mix {
  const requests: MixEntry[] = [];
  for (const s of services) {
    for (const database of Object.keys(s.databases)) {
      for (const action of ACTIONS) {
        if (Object.values(roles).some((r) => evaluate(r, database, action).allowed)) {
          requests.push({ service: s.name, database, action, weight: DEFAULT_WEIGHTS[action] });
        }
      }
    }
  }
  const used = Object.values(roles)
    .filter((r) => requests.some((e) => evaluate(r, e.database, e.action).allowed))
    .map((r) => r.name)
    .sort();
  return { roles: used, requests };
}

/**
 * Checks a mix document against the lab (its services, their databases, the roles in the store):
 * every problem is an INVALID_INPUT that names the entry.
 */
export function parseMix(
  doc: unknown,
  services: readonly ServiceDefinition[],
  roles: Record<string, Role>,
): Mix {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw invalid('expected a JSON object');
  const { roles: roleNames, requests, ...rest } = doc as Record<string, unknown>;
  const extra = Object.keys(rest).filter((k) => k !== '$comment');
  if (extra.length > 0) throw invalid(`unknown field ${extra[0]} (expected roles, requests)`);
  if (!Array.isArray(requests) || requests.length === 0)
    throw invalid('"requests" must be a non-empty array');
  if (requests.length > MAX_ENTRIES) throw invalid(`at most ${MAX_ENTRIES} requests`);
  const byName = new Map(services.map((s) => [s.name, s]));
  const entries = requests.map((raw, i): MixEntry => {
    const where = `requests[${i}]`;
    if (typeof raw !== 'object' || raw === null) throw invalid(`${where} is not an object`);
    const { service, database, action, weight = 1 } = raw as Record<string, unknown>;
    if (typeof service !== 'string') throw invalid(`${where}: "service" must be a string`);
    const def = byName.get(service);
    if (def === undefined) {
      throw invalid(
        `${where}: no service ${JSON.stringify(service)} in this lab (${[...byName.keys()].join(', ')})`,
      );
    }
    const owned = Object.keys(def.databases);
    const db = database ?? owned[0];
    if (typeof db !== 'string' || !owned.includes(db)) {
      throw invalid(
        `${where}: ${service} owns ${owned.join(', ') || 'no database'}, not ${JSON.stringify(db)}`,
      );
    }
    if (typeof action !== 'string' || !(ACTIONS as readonly string[]).includes(action)) {
      throw invalid(`${where}: "action" must be one of ${ACTIONS.join(', ')}`);
    }
    if (typeof weight !== 'number' || !Number.isFinite(weight) || weight <= 0 || weight > 1e6) {
      throw invalid(`${where}: "weight" must be a number above 0 (and at most 1,000,000)`);
    }
    return { service, database: db, action: action as Action, weight };
  });
  let chosen: string[];
  if (roleNames === undefined) {
    chosen = Object.keys(roles)
      .filter((r) => entries.some((e) => evaluate(roles[r], e.database, e.action).allowed))
      .sort();
  } else {
    if (!Array.isArray(roleNames) || roleNames.length === 0 || roleNames.some((r) => typeof r !== 'string')) {
      throw invalid('"roles" must be a non-empty array of role names');
    }
    chosen = [...new Set(roleNames as string[])];
    for (const r of chosen) {
      if (!Object.hasOwn(roles, r))
        throw invalid(`unknown role ${JSON.stringify(r)} (${Object.keys(roles).join(', ')})`);
      if (!entries.some((e) => evaluate(roles[r], e.database, e.action).allowed)) {
        throw invalid(`role ${r} may do none of the requests: its users would have nothing to send`);
      }
    }
  }
  for (const [i, e] of entries.entries()) {
    if (!chosen.some((r) => evaluate(roles[r], e.database, e.action).allowed)) {
      throw invalid(`requests[${i}]: no role of the mix may ${e.action} ${e.database}`);
    }
  }
  if (chosen.length === 0) throw invalid('no role of the lab may do any of the requests');
  return { roles: chosen, requests: entries };
}

/** Reads and checks a mix file. */
export async function readMixFile(
  file: string,
  services: readonly ServiceDefinition[],
  roles: Record<string, Role>,
): Promise<Mix> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = errnoCode(err);
    throw new TrustedMsError(
      code === 'ENOENT' ? 'FILE_NOT_FOUND' : 'INVALID_INPUT',
      `cannot read the mix file ${file} (${code ?? 'error'})`,
    );
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw invalid(`${file} is not JSON: ${(err as Error).message}`);
  }
  return parseMix(doc, services, roles);
}

/** The entries a role may do, as a weighted picker; `pick(u)` maps u ∈ [0,1) to an entry. */
export function pickerFor(mix: Mix, role: Role): { entries: MixEntry[]; pick: (u: number) => MixEntry } {
  const entries = mix.requests.filter((e) => evaluate(role, e.database, e.action).allowed);
  const cumulative: number[] = [];
  let total = 0;
  for (const e of entries) {
    total += e.weight;
    cumulative.push(total);
  }
  return {
    entries,
    pick: (u) => {
      const x = u * total;
      let lo = 0;
      let hi = cumulative.length - 1;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if ((cumulative[mid] as number) > x) hi = mid;
        else lo = mid + 1;
      }
      return entries[lo] as MixEntry;
    },
  };
}
