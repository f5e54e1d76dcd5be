import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { POSTURES } from '../../../src/defences/posture.js';
import { planClusterLab } from '../../../src/export/cluster-plan.js';
import { type ComposeFile, composeFileOf } from '../../../src/export/compose.js';

/** The compose file as written and read back: what `docker compose` would see. */
const composeOf = (posture: (typeof POSTURES)[number], replicas = 2) => {
  const lab = planClusterLab({ posture, services: 20, replicas, labId: 'cafe0004' });
  return { lab, file: parse(stringify(composeFileOf(lab))) as ComposeFile };
};

describe('lab export --format compose', () => {
  it.each(POSTURES)('%s: one compose service per part, with its replicas', (posture) => {
    const { lab, file } = composeOf(posture, 3);
    expect(Object.keys(file.services).sort()).toEqual(lab.parts.map((p) => p.config.part).sort());
    expect(Object.keys(file.services)).toHaveLength(22);
    expect(file.services.accounts?.deploy.replicas).toBe(3);
    expect(file.services.security?.deploy.replicas).toBe(1);
    expect(file.services.accounts?.deploy.resources.reservations.memory).toBe('40M');
  });

  it.each(
    POSTURES,
  )('%s: the parts sit on an internal network; only the gateway is also on the edge', (posture) => {
    const { file } = composeOf(posture);
    expect(file.networks.internal).toEqual({ internal: true });
    expect(file.networks.edge?.driver_opts?.['com.docker.network.bridge.host_binding_ipv4']).toBe(
      '127.0.0.1',
    );
    for (const [name, s] of Object.entries(file.services)) {
      expect(s.networks, name).toEqual(name === 'gateway' ? ['internal', 'edge'] : ['internal']);
      for (const n of s.networks) expect(Object.keys(file.networks)).toContain(n);
    }
  });

  it.each(POSTURES)('%s: no published port but the gateway, on 127.0.0.1', (posture) => {
    const { file } = composeOf(posture);
    const published = Object.entries(file.services).filter(([, s]) => s.ports !== undefined);
    expect(published.map(([name]) => name)).toEqual(['gateway']);
    expect(file.services.gateway?.ports).toEqual([
      { target: 8080, host_ip: '127.0.0.1', published: '8080', protocol: 'tcp' },
    ]);
    for (const s of Object.values(file.services))
      expect(JSON.stringify(s)).not.toMatch(/expose|network_mode|privileged/);
  });

  it.each(
    POSTURES,
  )('%s: every config, secret and volume a service names is declared, and holds no key', (posture) => {
    const { file } = composeOf(posture);
    for (const [name, s] of Object.entries(file.services)) {
      for (const c of s.configs) expect(file.configs[c.source], `${name} config ${c.source}`).toBeDefined();
      for (const sec of s.secrets ?? []) {
        expect(file.secrets?.[sec.source], `${name} secret ${sec.source}`).toBeDefined();
        expect(file.secrets?.[sec.source]?.file).toMatch(/^\.\/secrets\/trusted-ms-[a-z-]+\/[a-z.-]+$/);
      }
      for (const v of s.volumes ?? []) expect(Object.keys(file.volumes ?? {})).toContain(v.split(':')[0]);
      expect(s.build.context).toMatch(/^\.\/images\//);
      expect(s.read_only).toBe(true);
      expect(s.cap_drop).toEqual(['ALL']);
    }
    expect(JSON.stringify(file)).not.toMatch(/PRIVATE KEY/);
  });

  it('trusted: a service reads its own identity and the CA certificate, never the CA key or the lab token', () => {
    const { file } = composeOf('trusted');
    const targets = (file.services.customers?.secrets ?? []).map((s) => s.target);
    expect(targets.sort()).toEqual(
      [
        '/var/lib/trusted-ms/lab/ca/ca.pem',
        '/var/lib/trusted-ms/lab/services/customers/identity/cert.pem',
        '/var/lib/trusted-ms/lab/services/customers/identity/key.pem',
      ].sort(),
    );
    const security = (file.services.security?.secrets ?? []).map((s) => s.target);
    expect(security).toContain('/var/lib/trusted-ms/lab/ca/ca-key.pem');
  });
});
