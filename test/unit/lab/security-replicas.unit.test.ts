import { describe, expect, it } from 'vitest';
import { checkSecurityReplicas } from '../../../src/lab/security-replicas.js';

describe('lab up --security-replicas', () => {
  it('takes 1 on any store and runtime, 2 or more on PostgreSQL on processes', () => {
    expect(() => checkSecurityReplicas(1, { kind: 'lowdb' }, 'docker')).not.toThrow();
    expect(() => checkSecurityReplicas(2, { kind: 'postgres' }, 'process')).not.toThrow();
  });

  it('refuses 2 or more on the files (REPLICAS_NEED_SHARED_STORE), on Docker (RUNTIME_UNSUPPORTED), and out of range (USAGE)', () => {
    expect(() => checkSecurityReplicas(2, { kind: 'lowdb' }, 'process')).toThrow(
      expect.objectContaining({ code: 'REPLICAS_NEED_SHARED_STORE', exitCode: 2 }),
    );
    expect(() => checkSecurityReplicas(2, { kind: 'postgres' }, 'docker')).toThrow(
      expect.objectContaining({ code: 'RUNTIME_UNSUPPORTED' }),
    );
    for (const n of [0, 6, 1.5])
      expect(() => checkSecurityReplicas(n, { kind: 'postgres' }, 'process')).toThrow(
        expect.objectContaining({ code: 'USAGE' }),
      );
  });
});
