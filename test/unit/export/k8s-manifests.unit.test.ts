import { describe, expect, it } from 'vitest';
import { POSTURES } from '../../../src/defences/posture.js';
import { planClusterLab } from '../../../src/export/cluster-plan.js';
import { type K8sObject, k8sManifests } from '../../../src/export/k8s/manifests.js';
import { partFiles } from '../../../src/export/part-files.js';
import { secretsGuide } from '../../../src/export/secrets-guide.js';
import { unknownFieldErrors, validateWithSchema } from '../../support/k8s-schema.js';

const labOf = (posture: (typeof POSTURES)[number], replicas = 3) =>
  planClusterLab({ posture, services: 20, replicas, labId: 'cafe0001' });
const objectsOf = (posture: (typeof POSTURES)[number]) => Object.values(k8sManifests(labOf(posture))).flat();

describe('lab export --format k8s: the manifests', () => {
  it.each(
    POSTURES,
  )('every object of the %s lab validates against the API schema (kubernetes-models 4.5.1)', (posture) => {
    const objects = objectsOf(posture);
    const kinds = new Set(objects.map((o) => o.kind));
    expect([...kinds].sort()).toEqual([
      'ConfigMap',
      'Deployment',
      'Namespace',
      'NetworkPolicy',
      'PersistentVolumeClaim',
      'PodDisruptionBudget',
      'Service',
    ]);
    for (const o of objects)
      expect(() => validateWithSchema(o), `${o.kind} ${o.metadata?.name}`).not.toThrow();
  });

  it('no object of any posture has a field its kind does not define (strict, as the TS interfaces)', () => {
    const objects = POSTURES.flatMap(objectsOf);
    expect(unknownFieldErrors(objects)).toEqual([]);
  }, 60_000);

  it('the checks bite: a wrong type and a missing field fail the schema, an unknown field the strict check', () => {
    const deployment = objectsOf('trusted').find((o) => o.kind === 'Deployment') as K8sObject & {
      spec: { replicas: unknown; template: { spec: { containers: Record<string, unknown>[] } } };
    };
    const wrongType = structuredClone(deployment);
    wrongType.spec.replicas = 'three';
    expect(() => validateWithSchema(wrongType)).toThrow(/replicas/);
    const missing = structuredClone(deployment);
    delete missing.spec.template.spec.containers[0]?.name;
    expect(() => validateWithSchema(missing)).toThrow(/name/);

    const unknown = structuredClone(deployment);
    (unknown.spec.template.spec.containers[0] as Record<string, unknown>).imagePullSecret = 'regcred';
    // The schema alone lets it through: why the strict check is there.
    expect(() => validateWithSchema(unknown)).not.toThrow();
    const errors = unknownFieldErrors([deployment, unknown]);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^o1: TS2353 .*imagePullSecret.* does not exist in type 'IContainer'/);
  }, 60_000);

  it('replicas: the services get --replicas, the security service and the gateway one each', () => {
    const deployments = k8sManifests(labOf('trusted', 4))['40-deployments.yaml'] as (K8sObject & {
      spec: { replicas: number };
    })[];
    const replicas = Object.fromEntries(deployments.map((d) => [d.metadata?.name, d.spec.replicas]));
    expect(replicas).toMatchObject({ security: 1, gateway: 1, accounts: 4, customers: 4 });
    expect(deployments).toHaveLength(22);
  });

  it('memory requests: 40 MiB a service (measured), 64 MiB security and gateway (estimated, and said)', () => {
    const deployments = k8sManifests(labOf('none'))['40-deployments.yaml'] as unknown as {
      metadata: { name: string; annotations: Record<string, string> };
      spec: { template: { spec: { containers: { resources: { requests: { memory: string } } }[] } } };
    }[];
    const request = (name: string) =>
      deployments.find((d) => d.metadata.name === name)?.spec.template.spec.containers[0]?.resources.requests
        .memory;
    expect(request('accounts')).toBe('40Mi');
    expect(request('security')).toBe('64Mi');
    expect(
      deployments.find((d) => d.metadata.name === 'gateway')?.metadata.annotations[
        'trusted-ms/memory-request'
      ],
    ).toMatch(/^estimated/);
  });

  it('secrets are references only: no key material in any object, and each part mounts only what it reads', () => {
    for (const posture of POSTURES) {
      const objects = objectsOf(posture);
      expect(objects.some((o) => o.kind === 'Secret')).toBe(false);
      expect(JSON.stringify(objects)).not.toMatch(/BEGIN [A-Z ]*PRIVATE KEY/);
    }
    const lab = labOf('trusted');
    const secretsOf = (part: string) =>
      partFiles(lab, lab.parts.find((p) => p.config.part === part) as (typeof lab.parts)[number]).flatMap(
        (f) => (f.from === 'secret' ? [f.secret.name] : []),
      );
    expect(secretsOf('security')).toContain('trusted-ms-ca');
    expect(secretsOf('accounts')).not.toContain('trusted-ms-ca');
    expect(secretsOf('accounts')).toEqual(['trusted-ms-identity-accounts', 'trusted-ms-ca-cert']);
    expect(secretsOf('gateway')).not.toContain('trusted-ms-lab-token');
  });

  it('--without shapes the export as it shapes lab up: trusted without links:mtls and edge:tls has no TLS, no identities, no control port', () => {
    const lab = planClusterLab({
      posture: 'trusted',
      without: ['links:mtls', 'edge:tls'],
      services: 20,
      replicas: 1,
      labId: 'cafe0005',
    });
    const objects = Object.values(k8sManifests(lab)).flat();
    for (const o of objects) validateWithSchema(o);
    const text = JSON.stringify(objects);
    expect(text).not.toContain('trusted-ms-identity-');
    expect(text).not.toContain('8443');
    expect(text).toContain('http://accounts:8080');
    const full = JSON.stringify(Object.values(k8sManifests(labOf('trusted'))).flat());
    expect(full).toContain('https://accounts:8080');
    expect(full).toContain('trusted-ms-identity-accounts');
  });

  it('trusted without links:mtls keeps edge:tls: only the gateway holds an identity, for its HTTPS', () => {
    const lab = planClusterLab({
      posture: 'trusted',
      without: ['links:mtls'],
      services: 20,
      replicas: 1,
      labId: 'cafe0006',
    });
    const objects = Object.values(k8sManifests(lab)).flat();
    for (const o of objects) validateWithSchema(o);
    const text = JSON.stringify(objects);
    expect(text).toContain('trusted-ms-identity-gateway');
    expect(text).not.toContain('trusted-ms-identity-accounts');
    expect(text).toContain('http://accounts:8080');
  });

  it.each(
    POSTURES,
  )('%s: SECRETS.md has a section and a kubectl line for every Secret a Deployment mounts, and no other', (posture) => {
    const lab = labOf(posture);
    const mounted = new Set(
      (
        k8sManifests(lab)['40-deployments.yaml'] as unknown as {
          spec: { template: { spec: { volumes: { secret?: { secretName: string } }[] } } };
        }[]
      ).flatMap((d) => d.spec.template.spec.volumes.flatMap((v) => (v.secret ? [v.secret.secretName] : []))),
    );
    const guide = secretsGuide(lab, 'k8s');
    const sections = [...guide.matchAll(/^## (trusted-ms-[a-z-]+)$/gm)].map((m) => m[1]);
    expect(sections.sort()).toEqual([...mounted].sort());
    for (const name of mounted) expect(guide).toContain(`create secret generic ${name} --from-file=`);
    expect(mounted.size).toBeGreaterThan(0);
  });
});
