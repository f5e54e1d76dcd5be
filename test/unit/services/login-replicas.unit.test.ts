import { describe, expect, it } from 'vitest';
import { TrustedMsError } from '../../../src/errors.js';
import { ReplicaSet } from '../../../src/kernel/replica-set.js';
import { loginReplicasUpstream } from '../../../src/services/gateway/login-replicas.js';
import type { Upstream, UpstreamResponse } from '../../../src/services/gateway/upstream.js';

const OK: UpstreamResponse = { status: 200, headers: {}, body: Buffer.from('{}') };
const STEP = { method: 'POST', path: '/v1/auth/challenge', headers: {} };

/** An upstream per replica URL that records what reached it and answers as told. */
function replicas(answers: Record<string, () => Promise<UpstreamResponse>>) {
  const reached: string[] = [];
  const upstreamOf = (url: string): Upstream => ({
    request: () => {
      reached.push(url);
      return (answers[url] as () => Promise<UpstreamResponse>)();
    },
  });
  return { reached, upstreamOf };
}

describe('login steps over security service replicas (issue 17)', () => {
  it('go to each replica in turn, one turn per kind of step, so that both issue tickets', async () => {
    const { reached, upstreamOf } = replicas({ a: async () => OK, b: async () => OK });
    const auth = loginReplicasUpstream(['a', 'b'], upstreamOf);
    const VERIFY = { ...STEP, path: '/v1/auth/verify' };
    for (let i = 0; i < 4; i++) {
      await auth.request(STEP);
      await auth.request(VERIFY);
    }
    expect(reached).toEqual(['a', 'a', 'b', 'b', 'a', 'a', 'b', 'b']);
  });

  it('are sent to the next replica when one gave no answer (down, or dropped before answering)', async () => {
    const down = async (): Promise<UpstreamResponse> => {
      throw new TrustedMsError('SERVICE_DOWN', 'the security service is not running (connection refused)');
    };
    const dropped = async (): Promise<UpstreamResponse> => {
      throw new TrustedMsError('SERVICE_UNAVAILABLE', 'the security service did not answer');
    };
    const { reached, upstreamOf } = replicas({ a: down, b: async () => OK, c: dropped });
    const auth = loginReplicasUpstream(['a', 'b', 'c'], upstreamOf);
    for (let i = 0; i < 3; i++) expect((await auth.request(STEP)).status).toBe(200);
    expect(reached).toEqual(['a', 'b', 'b', 'c', 'a', 'b']);
  });

  it('relay an answer as it is, a refusal too, and fail when no replica answers', async () => {
    const refused: UpstreamResponse = {
      status: 401,
      headers: {},
      body: Buffer.from('{"code":"AUTH_FAILED"}'),
    };
    const { reached, upstreamOf } = replicas({ a: async () => refused, b: async () => OK });
    const auth = loginReplicasUpstream(['a', 'b'], upstreamOf);
    expect((await auth.request(STEP)).status).toBe(401);
    expect(reached).toEqual(['a']);

    const none = replicas({
      a: async () => {
        throw new TrustedMsError('SERVICE_DOWN', 'a is not running');
      },
      b: async () => {
        throw new TrustedMsError('SERVICE_DOWN', 'b is not running');
      },
    });
    const dead = loginReplicasUpstream(['a', 'b'], none.upstreamOf);
    await expect(dead.request(STEP)).rejects.toMatchObject({ code: 'SERVICE_DOWN' });
  });
});

describe('ReplicaSet.callSticky (control-plane calls, the admin channel)', () => {
  it('keeps to the replica that answered, moves on only when a request never reached one', async () => {
    const set = new ReplicaSet(['a', 'b']);
    const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    const sentTo: string[] = [];
    const answer = await set.callSticky(async (url) => {
      sentTo.push(url);
      if (url === 'a') throw new TrustedMsError('SERVICE_UNAVAILABLE', 'cannot reach a', { cause: refused });
      return url;
    });
    expect(answer).toBe('b');
    expect(set.sticky()[0]).toBe('b');

    // Reached and failed after: it may have been acted on, so it is not sent again elsewhere.
    const reset = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    await expect(
      set.callSticky(async (url) => {
        sentTo.push(url);
        throw new TrustedMsError('SERVICE_UNAVAILABLE', `cannot reach ${url}`, { cause: reset });
      }),
    ).rejects.toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
    expect(sentTo).toEqual(['a', 'b', 'b']);
  });
});
