import { describe, expect, it } from 'vitest';
import { judgeLink, recordLinkProbe } from '../../../src/attacks/mitm.js';
import { emptyProxyStats } from '../../../src/attacks/proxy.js';
import type { ScenarioContext } from '../../../src/attacks/types.js';

/** Only what judgeLink reads: the attempts and the scratch its probes are kept in. */
function context(): ScenarioContext {
  return { evidence: { attempts: [] }, scratch: {} } as unknown as ScenarioContext;
}

const attempt = (gotData: boolean) => ({ action: 'look', target: 'tcp://proxy', gotData });

describe('the verdict of an attack on the link (judgeLink)', () => {
  it('succeeded when a look read or changed the data', () => {
    const ctx = context();
    recordLinkProbe(ctx, { ...emptyProxyStats(), connections: 1 });
    ctx.evidence.attempts.push(attempt(true));
    expect(judgeLink(ctx)).toBe('succeeded');
  });

  it("blocked when the caller's traffic passed the proxy as TLS and nothing was read or changed", () => {
    const ctx = context();
    recordLinkProbe(ctx, { ...emptyProxyStats(), connections: 1, sawTls: true, tlsRecordsAltered: 3 });
    // the terminating proxy after it: refused at the handshake, no connection through
    recordLinkProbe(ctx, emptyProxyStats());
    ctx.evidence.attempts.push(attempt(false), attempt(false));
    expect(judgeLink(ctx)).toBe('blocked');
    expect(ctx.evidence.inconclusive).toBeUndefined();
  });

  it('inconclusive, never blocked, when a plain link passed the proxy and nothing was changed (busy matrix: mitm.tamper "blocked" on a plain link)', () => {
    const ctx = context();
    recordLinkProbe(ctx, { ...emptyProxyStats(), connections: 1, bytesUp: 300, bytesDown: 900 });
    ctx.evidence.attempts.push(attempt(false));
    expect(judgeLink(ctx)).toBe('inconclusive');
    expect(ctx.evidence.inconclusive).toMatch(/plain HTTP/);
  });

  it('inconclusive when no traffic passed the proxy (issue 21: a proxy that relayed 0 bytes)', () => {
    const ctx = context();
    recordLinkProbe(ctx, emptyProxyStats());
    ctx.evidence.attempts.push(attempt(false));
    expect(judgeLink(ctx)).toBe('inconclusive');
    expect(ctx.evidence.inconclusive).toMatch(/no traffic/);
  });
});
