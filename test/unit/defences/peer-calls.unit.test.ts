import { describe, expect, it } from 'vitest';
import { DEFAULT_PEER_CALLS, PeerCallPolicy, parsePeerCalls } from '../../../src/defences/peer-calls.js';
import { isTrustedMsError } from '../../../src/errors.js';
import { labTopology, parseTopology } from '../../../src/kernel/topology.js';

const codeOf = (f: () => unknown): string | undefined => {
  try {
    f();
    return undefined;
  } catch (e) {
    return isTrustedMsError(e) ? e.code : 'other';
  }
};

describe('the per-edge peer policy (identity.relayed-ticket)', () => {
  const accounts = new PeerCallPolicy(DEFAULT_PEER_CALLS, ['accounts']);

  it('lets a caller make the requests the kit itself makes of a peer: its health and a read', () => {
    expect(codeOf(() => accounts.check('customers', 'GET', '/healthz'))).toBeUndefined();
    expect(codeOf(() => accounts.check('customers', 'GET', '/db/accounts/records'))).toBeUndefined();
  });

  it('refuses a write, a query, a single record, another database and /overview with PEER_CALL_NOT_ALLOWED', () => {
    const refused: [string, string][] = [
      ['PUT', '/db/accounts/records/acc-1'],
      ['PUT', '/db/accounts/records'],
      ['POST', '/db/accounts/query'],
      ['GET', '/db/accounts/records/acc-1'],
      ['GET', '/db/customers/records'],
      ['GET', '/db/:db/records'],
      ['GET', '/overview'],
      ['HEAD', '/db/accounts/records'],
      ['get', '/db/accounts/records'],
    ];
    for (const [method, path] of refused) {
      expect([method, path, codeOf(() => accounts.check('customers', method, path))]).toEqual([
        method,
        path,
        'PEER_CALL_NOT_ALLOWED',
      ]);
    }
  });

  it("expands ':db' to each database the peer owns, escaped as a path segment", () => {
    const two = new PeerCallPolicy(['GET /db/:db/records', 'PUT /db/:db/records/x'], ['a', 'b c']);
    for (const path of ['/db/a/records', '/db/b%20c/records']) {
      expect(codeOf(() => two.check('p', 'GET', path))).toBeUndefined();
    }
    expect(codeOf(() => two.check('p', 'PUT', '/db/a/records/x'))).toBeUndefined();
    expect(codeOf(() => two.check('p', 'PUT', '/db/a/records/y'))).toBe('PEER_CALL_NOT_ALLOWED');
    // no database, no rule with ':db'
    expect(codeOf(() => new PeerCallPolicy(DEFAULT_PEER_CALLS, []).check('p', 'GET', '/db/a/records'))).toBe(
      'PEER_CALL_NOT_ALLOWED',
    );
  });

  it('refuses a malformed rule list with INVALID_INPUT', () => {
    expect(parsePeerCalls(['GET /healthz', 'PUT /db/:db/records/x'], 't')).toEqual([
      'GET /healthz',
      'PUT /db/:db/records/x',
    ]);
    for (const bad of [
      'GET /healthz',
      ['get /healthz'],
      ['GET healthz'],
      ['PATCH /x'],
      ['GET /x y'],
      [1],
      Array.from({ length: 33 }, () => 'GET /x'),
    ]) {
      expect(codeOf(() => parsePeerCalls(bad, 't'))).toBe('INVALID_INPUT');
    }
  });

  it("is the topology's peerCalls: the lab's file gives reads only, an absent one the kit's default", () => {
    expect(labTopology().peerCalls).toEqual(['GET /healthz', 'GET /db/:db/records']);
    const services = [{ name: 'a', description: '', databases: { a: [] }, calls: [] }];
    expect(parseTopology({ version: 1, services }).peerCalls).toEqual(DEFAULT_PEER_CALLS);
    expect(parseTopology({ version: 1, services, peerCalls: ['GET /x'] }).peerCalls).toEqual(['GET /x']);
    expect(codeOf(() => parseTopology({ version: 1, services, peerCalls: ['DELETE everything'] }))).toBe(
      'INVALID_INPUT',
    );
  });
});
