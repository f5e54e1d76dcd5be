import { describe, expect, it } from 'vitest';
import {
  DEFAULT_PEER_CALLS,
  PeerCallPolicy,
  parseCallerRules,
  parsePeerCalls,
  parseRuleList,
  rulesForEdge,
} from '../../../src/defences/peer-calls.js';
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
  // accounts, called by customers and payments; payments' edge may also write
  const accounts = new PeerCallPolicy(
    { customers: DEFAULT_PEER_CALLS, payments: [...DEFAULT_PEER_CALLS, 'PUT /db/:db/records/pay'] },
    ['accounts'],
  );

  it('lets a caller make the requests the kit itself makes of a peer: its health and a read', () => {
    expect(codeOf(() => accounts.check('customers', 'GET', '/healthz'))).toBeUndefined();
    expect(codeOf(() => accounts.check('customers', 'GET', '/db/accounts/records'))).toBeUndefined();
  });

  it('refuses a write, a query, a single record, another database and /overview with PEER_CALL_NOT_ALLOWED', () => {
    const refused: [string, string][] = [
      ['PUT', '/db/accounts/records/acc-1'],
      ['PUT', '/db/accounts/records/pay'],
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

  it("holds each caller to its own edge: another edge's write, or a caller without an edge, is refused", () => {
    expect(codeOf(() => accounts.check('payments', 'PUT', '/db/accounts/records/pay'))).toBeUndefined();
    expect(codeOf(() => accounts.check('customers', 'PUT', '/db/accounts/records/pay'))).toBe(
      'PEER_CALL_NOT_ALLOWED',
    );
    expect(codeOf(() => accounts.check('catalog', 'GET', '/db/accounts/records'))).toBe(
      'PEER_CALL_NOT_ALLOWED',
    );
  });

  it("expands ':db' to each database the peer owns, escaped as a path segment", () => {
    const two = new PeerCallPolicy({ p: ['GET /db/:db/records', 'PUT /db/:db/records/x'] }, ['a', 'b c']);
    for (const path of ['/db/a/records', '/db/b%20c/records']) {
      expect(codeOf(() => two.check('p', 'GET', path))).toBeUndefined();
    }
    expect(codeOf(() => two.check('p', 'PUT', '/db/a/records/x'))).toBeUndefined();
    expect(codeOf(() => two.check('p', 'PUT', '/db/a/records/y'))).toBe('PEER_CALL_NOT_ALLOWED');
    // no database, no rule with ':db'
    expect(
      codeOf(() => new PeerCallPolicy({ p: DEFAULT_PEER_CALLS }, []).check('p', 'GET', '/db/a/records')),
    ).toBe('PEER_CALL_NOT_ALLOWED');
  });

  it('refuses a malformed rule list with INVALID_INPUT', () => {
    expect(parseRuleList(['GET /healthz', 'PUT /db/:db/records/x'], 't')).toEqual([
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
      expect(codeOf(() => parseRuleList(bad, 't'))).toBe('INVALID_INPUT');
      expect(codeOf(() => parseCallerRules({ orders: bad }, 't'))).toBe('INVALID_INPUT');
    }
    for (const bad of [null, 'x', ['GET /x']])
      expect(codeOf(() => parseCallerRules(bad, 't'))).toBe('INVALID_INPUT');
  });

  it('reads rules by edge: "*" (the kit\'s calls when absent) and "<caller>-><callee>" of an edge only', () => {
    const edge = (caller: string, callee: string) => caller === 'customers' && callee === 'accounts';
    const rules = parsePeerCalls({ 'customers->accounts': ['PUT /db/:db/records/x'] }, 't', edge);
    expect(rulesForEdge(rules, 'customers', 'accounts')).toEqual(['PUT /db/:db/records/x']);
    expect(rulesForEdge(rules, 'orders', 'customers')).toEqual(DEFAULT_PEER_CALLS);
    expect(rulesForEdge(parsePeerCalls(['GET /x'], 't', edge), 'orders', 'customers')).toEqual(['GET /x']);
    expect(rulesForEdge({}, 'orders', 'customers')).toEqual(DEFAULT_PEER_CALLS);
    for (const bad of [
      { 'catalog->accounts': ['GET /x'] },
      { 'customers-accounts': ['GET /x'] },
      { '*': 'GET /x' },
      null,
      7,
    ]) {
      expect(codeOf(() => parsePeerCalls(bad, 't', edge))).toBe('INVALID_INPUT');
    }
  });

  it("is the topology's peerCalls: the lab's file gives reads on every edge, an absent one the kit's default", () => {
    expect(labTopology().peerCalls).toEqual({ '*': ['GET /healthz', 'GET /db/:db/records'] });
    const services = [
      { name: 'a', description: '', databases: { a: [] }, calls: ['b'] },
      { name: 'b', description: '', databases: { b: [] }, calls: [] },
    ];
    expect(parseTopology({ version: 1, services }).peerCalls).toEqual({ '*': DEFAULT_PEER_CALLS });
    expect(parseTopology({ version: 1, services, peerCalls: { 'a->b': ['GET /x'] } }).peerCalls).toEqual({
      '*': DEFAULT_PEER_CALLS,
      'a->b': ['GET /x'],
    });
    for (const peerCalls of [['DELETE everything'], { 'b->a': ['GET /x'] }]) {
      expect(codeOf(() => parseTopology({ version: 1, services, peerCalls }))).toBe('INVALID_INPUT');
    }
  });
});
