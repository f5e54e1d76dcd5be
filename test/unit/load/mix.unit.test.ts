import { describe, expect, it } from 'vitest';
import { labTopology } from '../../../src/kernel/topology.js';
import { parseDuration } from '../../../src/load/duration.js';
import { defaultMix, parseMix, pickerFor } from '../../../src/load/mix.js';
import { requestMaker } from '../../../src/load/requests.js';
import { defaultRoles } from '../../../src/policy/roles.js';

const services = labTopology().services;
const roles = defaultRoles();

describe('load mix', () => {
  it('defaults to every database of the lab, and only roles that may do something', () => {
    const mix = defaultMix(services, roles);
    const dbs = new Set(services.flatMap((s) => Object.keys(s.databases)));
    expect(new Set(mix.requests.map((e) => e.database))).toEqual(dbs);
    for (const r of mix.roles) expect(pickerFor(mix, roles[r]!).entries.length).toBeGreaterThan(0);
  });

  it('names the problem in a bad mix', () => {
    const bad = (doc: unknown) => () => parseMix(doc, services, roles);
    expect(bad([])).toThrow(/JSON object/);
    expect(bad({ requests: [] })).toThrow(/non-empty/);
    expect(bad({ requests: [{ service: 'nope', action: 'read' }] })).toThrow(/no service "nope"/);
    expect(bad({ requests: [{ service: 'orders', database: 'accounts', action: 'read' }] })).toThrow(/owns/);
    expect(bad({ requests: [{ service: 'orders', action: 'delete' }] })).toThrow(/action/);
    expect(bad({ requests: [{ service: 'orders', action: 'read', weight: 0 }] })).toThrow(/weight/);
    expect(bad({ roles: ['root'], requests: [{ service: 'orders', action: 'read' }] })).toThrow(
      /unknown role/,
    );
    expect(bad({ requests: [{ service: 'orders', action: 'read' }], extra: 1 })).toThrow(
      /unknown field extra/,
    );
  });

  it('picks entries in proportion to their weights', () => {
    const mix = parseMix(
      {
        roles: ['admin'],
        requests: [
          { service: 'orders', action: 'read', weight: 3 },
          { service: 'orders', action: 'query', weight: 1 },
        ],
      },
      services,
      roles,
    );
    const { pick } = pickerFor(mix, roles.admin!);
    const counts = { read: 0, query: 0, write: 0 };
    for (let i = 0; i < 1000; i++) counts[pick(i / 1000).action] += 1;
    expect(counts).toEqual({ read: 750, query: 250, write: 0 });
  });

  it('makes requests the sample services know', () => {
    const make = requestMaker(services);
    const orders = services.find((s) => s.name === 'orders')!;
    const db = Object.keys(orders.databases)[0]!;
    expect(make({ service: 'orders', database: db, action: 'read', weight: 1 }, 0, 0)).toMatchObject({
      method: 'GET',
      path: `/svc/orders/db/${db}/records/${orders.databases[db]![0]!.id}`,
    });
    const q = make({ service: 'orders', database: db, action: 'query', weight: 1 }, 0, 0);
    expect(q.method).toBe('POST');
    expect(Object.keys(JSON.parse(q.body!).where)).toHaveLength(1);
    expect(make({ service: 'orders', database: db, action: 'write', weight: 1 }, 7, 3).path).toBe(
      `/svc/orders/db/${db}/records/load-vu-7`,
    );
  });

  it('reads durations', () => {
    expect(parseDuration('10s')).toBe(10_000);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('2m')).toBe(120_000);
    expect(parseDuration('1.5')).toBe(1500);
    expect(() => parseDuration('ten')).toThrow(/duration/);
  });
});
