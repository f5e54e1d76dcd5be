import { describe, expect, it } from 'vitest';
import { type EdgeLook, judgeEdgeEavesdrop } from '../../../src/attacks/scenarios/mitm.edge-eavesdrop.js';
import type { ScenarioContext } from '../../../src/attacks/types.js';

/** Only what the judge reads: the looks kept in scratch. */
function context(...looks: EdgeLook[]): ScenarioContext {
  return { evidence: { attempts: [] }, scratch: { edgeLooks: looks } } as unknown as ScenarioContext;
}

const look = (l: Partial<EdgeLook>): EdgeLook => ({
  connections: 1,
  sawTls: false,
  readCredential: false,
  victimLoggedIn: true,
  ...l,
});

describe('the verdict of mitm.edge-eavesdrop (judgeEdgeEavesdrop)', () => {
  it('succeeded when a look read the password, whatever else it saw', () => {
    expect(judgeEdgeEavesdrop(context(look({ readCredential: true })))).toBe('succeeded');
    expect(judgeEdgeEavesdrop(context(look({ sawTls: true }), look({ readCredential: true })))).toBe(
      'succeeded',
    );
  });

  it('blocked when the relay saw TLS only and the victim refused the terminating proxy', () => {
    const ctx = context(look({ sawTls: true }), look({ connections: 1, victimLoggedIn: false }));
    expect(judgeEdgeEavesdrop(ctx)).toBe('blocked');
    expect(ctx.evidence.inconclusive).toBeUndefined();
  });

  it('inconclusive, never blocked, when nothing passed the proxy or a plain link passed and nothing was read', () => {
    const none = context(look({ connections: 0 }));
    expect(judgeEdgeEavesdrop(none)).toBe('inconclusive');
    expect(none.evidence.inconclusive).toMatch(/not carried out/);
    const plain = context(look({}));
    expect(judgeEdgeEavesdrop(plain)).toBe('inconclusive');
    expect(plain.evidence.inconclusive).toMatch(/plain HTTP/);
    expect(judgeEdgeEavesdrop(context())).toBe('inconclusive');
  });

  it("inconclusive when the victim logged in through the attacker's own certificate and nothing was read", () => {
    const ctx = context(look({ sawTls: true }), look({ sawTls: true, victimLoggedIn: true }));
    expect(judgeEdgeEavesdrop(ctx)).toBe('inconclusive');
  });
});
