import { describe, expect, it } from 'vitest';
import { planClusterLab } from '../../../src/export/cluster-plan.js';
import { selectorOf } from '../../../src/export/k8s/labels.js';
import { networkPolicies } from '../../../src/export/k8s/network-policies.js';
import { labTopology } from '../../../src/kernel/topology.js';
import { admitsFromOutside, allows, type Policy } from '../../support/network-policy.js';

const lab = planClusterLab({ posture: 'trusted', services: 20, replicas: 2, labId: 'cafe0002' });
const policies = networkPolicies(lab) as unknown as Policy[];
const PORT = 8080;
const parts = lab.parts.map((p) => p.config.part);
const pod = (part: string) => ({ ...selectorOf(part), 'app.kubernetes.io/component': 'any' });
const can = (from: string, to: string, port = PORT) => allows(policies, pod(from), pod(to), port);

/** Who calls a service, read from the topology file itself, not from the export's plan. */
const topologyCallers = (service: string) =>
  labTopology()
    .services.filter((s) => s.calls.includes(service))
    .map((s) => s.name);

describe('lab export --format k8s: NetworkPolicies', () => {
  it('the topology has edges to check: some services are called, some call two', () => {
    expect(labTopology().services.filter((s) => s.calls.length > 0).length).toBeGreaterThan(5);
  });

  it.each(
    labTopology().services.map((s) => s.name),
  )('%s is reached by exactly the gateway and the callers the topology lists, and no other part', (service) => {
    const allowed = parts.filter((p) => p !== service && can(p, service));
    expect(allowed.sort()).toEqual(['gateway', ...topologyCallers(service)].sort());
    // both ways: each part not listed is refused, the security service and the other services alike
    for (const other of parts.filter((p) => !allowed.includes(p) && p !== service))
      expect(can(other, service), `${other} → ${service}`).toBe(false);
  });

  it.each(
    labTopology().services.map((s) => [s.name, s.calls] as const),
  )('%s reaches exactly the security service and its callees %j', (service, calls) => {
    const reached = parts.filter((p) => p !== service && can(service, p));
    expect(reached.sort()).toEqual(['security', ...calls].sort());
  });

  it('the gateway takes anyone on its port, the security service every part; no other part takes anyone from outside', () => {
    expect(admitsFromOutside(policies, pod('gateway'), PORT)).toBe(true);
    expect(admitsFromOutside(policies, pod('gateway'), 9999)).toBe(false);
    expect(can('gateway', 'gateway', 9999)).toBe(false);
    for (const p of parts.filter((p) => p !== 'security')) expect(can(p, 'security'), p).toBe(true);
    expect(can('security', 'gateway')).toBe(true);
    for (const p of parts.filter((p) => p !== 'gateway'))
      expect(admitsFromOutside(policies, pod(p), PORT), p).toBe(false);
    // the control-plane listener (links:mtls) for the parts, and no other port
    expect(can('accounts', 'security', 8443)).toBe(true);
    expect(can('accounts', 'security', 22)).toBe(false);
  });

  it('deny is the default: a pod of the namespace no policy names gets in nowhere and out nowhere', () => {
    const stranger = { 'app.kubernetes.io/name': 'stranger', 'app.kubernetes.io/part-of': 'trusted-ms' };
    for (const p of parts.filter((p) => p !== 'gateway')) {
      expect(allows(policies, stranger, pod(p), PORT), p).toBe(false);
      expect(allows(policies, pod(p), stranger, PORT), p).toBe(false);
    }
  });

  it('a smaller lab has policies for its own services only', () => {
    const small = planClusterLab({ posture: 'none', services: 3, replicas: 1, labId: 'cafe0003' });
    const names = networkPolicies(small).map((p) => p.metadata?.name);
    expect(names).toContain('default-deny');
    expect(names).toHaveLength(2 + small.parts.length);
    expect(small.parts.length).toBeLessThan(22);
  });
});
