import type { ServiceDefinition } from '../kernel/topology.js';
import type { MixEntry } from './mix.js';

/** One concrete HTTP request of the load: what the gateway sees under `/svc/<service>`. */
export interface LoadRequest {
  service: string;
  method: 'GET' | 'POST' | 'PUT';
  /** full gateway path, `/svc/<service>/db/...` */
  path: string;
  body?: string;
}

/**
 * Turns a mix entry into requests the sample services answer with a 200: reads of the seed
 * records (cycling through them), queries on a field of a seed record, and writes that overwrite
 * one record per virtual user (so a long run never fills a database).
 */
export function requestMaker(
  services: readonly ServiceDefinition[],
): (entry: MixEntry, vu: number, seq: number) => LoadRequest {
  const seeds = new Map<string, { ids: string[]; where: Record<string, unknown>[] }>();
  for (const s of services) {
    for (const [db, records] of Object.entries(s.databases)) {
      seeds.set(db, {
        ids: records.map((r) => r.id),
        where: records.map((r) => {
          const field = Object.entries(r).find(
            ([k, v]) => k !== 'id' && ['string', 'number', 'boolean'].includes(typeof v),
          );
          return field === undefined ? {} : { [field[0]]: field[1] };
        }),
      });
    }
  }
  return (entry, vu, seq) => {
    const base = `/svc/${entry.service}/db/${encodeURIComponent(entry.database)}`;
    const seed = seeds.get(entry.database) ?? { ids: [], where: [] };
    switch (entry.action) {
      case 'read': {
        const id = seed.ids[seq % Math.max(1, seed.ids.length)];
        return {
          service: entry.service,
          method: 'GET',
          path: id === undefined ? `${base}/records` : `${base}/records/${encodeURIComponent(id)}`,
        };
      }
      case 'query':
        return {
          service: entry.service,
          method: 'POST',
          path: `${base}/query`,
          body: JSON.stringify({ where: seed.where[seq % Math.max(1, seed.where.length)] ?? {} }),
        };
      case 'write':
        return {
          service: entry.service,
          method: 'PUT',
          path: `${base}/records/load-vu-${vu}`,
          body: JSON.stringify({ record: { by: `vu-${vu}`, seq } }),
        };
    }
  };
}
