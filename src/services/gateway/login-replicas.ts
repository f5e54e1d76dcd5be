import { isTrustedMsError } from '../../errors.js';
import { ReplicaSet } from '../../kernel/replica-set.js';
import type { Upstream } from './upstream.js';

/**
 * The login steps relayed over the security service replicas (issue 17): each step to the next
 * replica in turn among the steps of its kind (one turn for challenges, one for verifies: a single
 * turn over both would, with two replicas, send every challenge to one and every verify, so every
 * ticket, to the other), and to the next one again when it got no answer from one (nothing listens, the
 * connection dropped before the answer, no answer in time). Only login steps come this way, and a
 * login step may be sent twice:
 * - a challenge step sent again issues a second challenge; the first, if it was issued at all,
 *   expires unanswered (it grants nothing by itself);
 * - a verify step sent again finds its challenge id taken when the first replica got as far as
 *   taking it (the shared store gives each id to one taker), and is refused CHALLENGE_UNKNOWN: a
 *   challenge still earns one ticket at most (the client then starts its login again, once:
 *   src/client/login.ts).
 * An answer, even a refusal, is relayed as it is: the replica acted on it.
 */
export function loginReplicasUpstream(
  urls: readonly string[],
  upstreamOf: (url: string) => Upstream,
): Upstream {
  const turns = new Map<string, ReplicaSet>();
  return {
    async request(opts) {
      let turn = turns.get(opts.path);
      if (turn === undefined) {
        turn = new ReplicaSet(urls);
        turns.set(opts.path, turn);
      }
      const order = turn.inTurn();
      for (const [i, url] of order.entries()) {
        try {
          return await upstreamOf(url).request(opts);
        } catch (err) {
          const noAnswer =
            isTrustedMsError(err) && (err.code === 'SERVICE_DOWN' || err.code === 'SERVICE_UNAVAILABLE');
          if (!noAnswer || i === order.length - 1) throw err;
          console.log(
            `gateway: login step ${opts.path} got no answer from ${url} (${err.message}); trying ${order[i + 1]}`,
          );
        }
      }
      throw new Error('unreachable: a replica set is never empty');
    },
  };
}
