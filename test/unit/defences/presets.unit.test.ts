import { describe, expect, it } from 'vitest';
import {
  ABLATION_NAMES,
  DEFENCE_NAMES,
  defenceList,
  defencesFor,
  labelOf,
  PRESETS,
  parseAblations,
  presetOf,
  ticketKindOf,
} from '../../../src/defences/presets.js';
import { isTrustedMsError } from '../../../src/errors.js';

describe('the postures as presets of defences', () => {
  it('names every defence in every preset, strongest in trusted', () => {
    for (const p of ['none', 'paper', 'trusted'] as const)
      expect(Object.keys(PRESETS[p]).sort()).toEqual([...DEFENCE_NAMES].sort());
    expect(defenceList(PRESETS.trusted)).toEqual([
      'login:challenge',
      'request:bound',
      'attestation:measured',
      'links:mtls',
      'limits:on',
      'edge:tls',
      'feeds:signed',
      'audit:signed',
    ]);
    expect(defenceList(PRESETS.none)).toEqual([
      'login:basic',
      'request:basic',
      'attestation:none',
      'links:plain',
      'limits:off',
      'edge:http',
      'feeds:plain',
      'audit:chain',
    ]);
  });

  it('removes one defence for the next weaker strategy, the rest as the preset has it', () => {
    expect(defencesFor('trusted', ['links:mtls'])).toEqual({ ...PRESETS.trusted, links: 'plain' });
    expect(defencesFor('trusted', ['request:bound'])).toEqual({ ...PRESETS.trusted, request: 'bearer' });
    expect(defencesFor('trusted', ['audit:signed'])).toEqual({ ...PRESETS.trusted, audit: 'chain' });
    expect(defencesFor('trusted', ['attestation:measured', 'limits:on'])).toEqual({
      ...PRESETS.trusted,
      attestation: 'none',
      limits: 'off',
    });
    // every removal changes exactly one defence of trusted
    for (const a of ABLATION_NAMES) {
      const d = defencesFor('trusted', [a]);
      expect(DEFENCE_NAMES.filter((n) => d[n] !== PRESETS.trusted[n])).toHaveLength(1);
      expect(presetOf(d)).toBeUndefined();
    }
    expect(presetOf(defencesFor('paper'))).toBe('paper');
  });

  it('refuses a removal the posture has nothing to remove for, or an unknown one, with INVALID_INPUT', () => {
    const err = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return e;
      }
      return undefined;
    };
    const unknown = err(() => parseAblations(['login:challenge'], 'trusted'));
    expect(isTrustedMsError(unknown, 'INVALID_INPUT')).toBe(true);
    expect((unknown as Error).message).toMatch(
      /one of request:bound, attestation:measured, links:mtls, limits:on/,
    );
    const absent = err(() => parseAblations(['links:mtls'], 'paper'));
    expect((absent as Error).message).toMatch(/the paper posture has links:plain, not links:mtls/);
    expect(parseAblations(['limits:on', 'limits:on'], 'trusted')).toEqual(['limits:on']);
  });

  it('labels a lab by its posture and what was removed, and knows which ticket a login issues', () => {
    expect(labelOf('trusted')).toBe('trusted');
    expect(labelOf('trusted', ['links:mtls', 'limits:on'])).toBe('trusted -links:mtls -limits:on');
    expect(ticketKindOf('basic')).toBeUndefined();
    expect(ticketKindOf('paper')).toBe('paper');
    expect(ticketKindOf('challenge')).toBe('trusted');
  });
});
