import { describe, expect, it } from 'vitest';
import { dependences } from '../../../src/attacks/ablation.js';
import { ablationVariants, runAttacks } from '../../../src/attacks/runner.js';
import { auditRewrite } from '../../../src/attacks/scenarios/audit.rewrite.js';
import { tamperedCode } from '../../../src/attacks/scenarios/malicious-service.tampered-code.js';
import { stolenTicket } from '../../../src/attacks/scenarios/masquerade.stolen-ticket.js';
import { eavesdrop } from '../../../src/attacks/scenarios/mitm.eavesdrop.js';
import { edgeEavesdrop } from '../../../src/attacks/scenarios/mitm.edge-eavesdrop.js';
import { cliJson, tempLab } from '../../support/cli.js';

/*
 * The ablation study on real process labs, on five scenarios whose defence the docs name: each is
 * blocked by trusted, and succeeds once that one defence is removed (and only then). The full
 * catalog's matrix is in the README (`attack simulate --all --ablate`, ~5 min).
 */
describe.sequential('ablation: which defence stops which attack', () => {
  it('finds each scenario blocked by trusted and let through by removing exactly its defence', async () => {
    const report = await runAttacks({
      scenarios: [stolenTicket, eavesdrop, tamperedCode, edgeEavesdrop, auditRewrite],
      postures: ['trusted'],
      variants: ablationVariants(),
      services: 4,
    });
    const errors = report.results
      .filter((r) => r.outcome === 'error')
      .map((r) => `${r.id}@${r.variant}: ${r.error?.message}`);
    expect(errors).toEqual([]);
    expect(report.postures.map((p) => p.variant)).toEqual([
      'trusted',
      'trusted -request:bound',
      'trusted -attestation:measured',
      'trusted -links:mtls',
      'trusted -limits:on',
      'trusted -edge:tls',
      'trusted -feeds:signed',
      'trusted -audit:signed',
    ]);
    const found = Object.fromEntries(dependences(report).map((d) => [d.id, [d.full, d.blockedBy]]));
    expect(found).toEqual({
      'masquerade.stolen-ticket': ['blocked', ['request:bound']],
      'mitm.eavesdrop': ['blocked', ['links:mtls']],
      'malicious-service.tampered-code': ['blocked', ['attestation:measured']],
      'mitm.edge-eavesdrop': ['blocked', ['edge:tls']],
      'audit.rewrite': ['blocked', ['audit:signed']],
    });
    // Both ways, from evidence: with its defence gone the attacker got the data.
    const without = report.results.find(
      (r) => r.id === stolenTicket.id && r.variant === 'trusted -request:bound',
    );
    expect(without?.evidence.attempts.some((a) => a.gotData && a.status === 200)).toBe(true);
    // The full posture is still judged against its expectations; the variants are findings.
    expect(report.results.filter((r) => r.variant === 'trusted').every((r) => r.passed && !r.ablation)).toBe(
      true,
    );
    expect(report.results.filter((r) => r.variant !== 'trusted').every((r) => r.ablation === true)).toBe(
      true,
    );
    expect(report.ok).toBe(true);
  }, 240_000);

  it('lab up --without starts trusted less a defence, and lab status shows the defences in force', async () => {
    await using lab = await tempLab();
    const up = await cliJson<{ result: { state: { defences: Record<string, string>; without: string[] } } }>(
      lab,
      ['lab', 'up', '--runtime', 'process', '--services', '2', '--without', 'links:mtls'],
    );
    try {
      expect(up.exitCode).toBe(0);
      expect(up.json.result.state.without).toEqual(['links:mtls']);
      expect(up.json.result.state.defences).toMatchObject({
        links: 'plain',
        request: 'bound',
        attestation: 'measured',
      });
      const status = await cliJson<{ result: { without: string[]; defences: string[] } }>(lab, [
        'lab',
        'status',
      ]);
      expect(status.json.result.without).toEqual(['links:mtls']);
      expect(status.json.result.defences).toEqual([
        'login:challenge',
        'request:bound',
        'attestation:measured',
        'links:plain',
        'limits:on',
        'edge:tls',
        'feeds:signed',
        'audit:signed',
      ]);
      const wrong = await cliJson<{ error: { code: string; message: string } }>(lab, [
        'lab',
        'up',
        '--posture',
        'paper',
        '--without',
        'links:mtls',
      ]);
      expect(wrong.exitCode).toBe(2);
      expect(wrong.json.error.code).toBe('INVALID_INPUT');
    } finally {
      await cliJson(lab, ['lab', 'down']);
    }
  }, 120_000);
});
