import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { LAB_TIME_FIELD } from '../../../protocol/lab-clock.js';
import { FEED_FIELD } from '../../../protocol/signed-feed.js';
import type { LabStore } from '../../../store/store.js';
import { quarantineIn, reinstateUserIn, releaseIn, revokeUserIn } from '../../../users/revocations.js';
import type { FeedSigner } from '../feed-signer.js';
import type { RevocationBook } from '../revocations.js';

/** What the revocation routes need: the store the changes go to, the book that publishes them. */
export interface RevocationRouteDeps {
  store: LabStore;
  revocations: RevocationBook;
  /** the lab clock, sent with every answer of the feed (the store's by default) */
  now?: () => number;
  /**
   * Who a poll confirms for, from the name it claims in `?part=`: only a part that proved to be it
   * (the security service's `confirmingPart`). By default the claimed name (parts are who they say).
   */
  confirmingPart?: (request: FastifyRequest, claimed: string | undefined) => string | undefined;
  /** feeds:signed: the list goes out in a signed envelope too, the only part the parts take */
  feeds?: FeedSigner;
}

const PART_RE = /^[a-z][a-z0-9-]{0,63}$/;
const NAME_PARAM = {
  type: 'object',
  required: ['name'],
  properties: { name: { type: 'string', minLength: 1, maxLength: 64 } },
} as const;

/**
 * `GET /v1/revocations`, the feed: readable without the lab token, like `/v1/keys` and
 * `/v1/services` (in `trusted` the services do not hold the token, and the list has no secret in it).
 */
export const revocationFeedRoutes: FastifyPluginAsync<RevocationRouteDeps> = async (app, deps) => {
  const book = deps.revocations;
  const now = deps.now ?? (() => deps.store.now().getTime());
  app.addHook('preClose', async () => book.releaseAll());

  app.get<{ Querystring: { since?: string; part?: string } }>(
    '/v1/revocations',
    {
      schema: {
        querystring: {
          type: 'object',
          properties: {
            since: { type: 'string', maxLength: 64 },
            part: { type: 'string', maxLength: 64 },
          },
        },
      },
    },
    async (request, reply) => {
      const { since, part } = request.query;
      const claimed = part !== undefined && PART_RE.test(part) ? part : undefined;
      const confirming = deps.confirmingPart ? deps.confirmingPart(request, claimed) : claimed;
      const list = await book.next(since, confirming, (cb) => reply.raw.on('close', cb));
      // Read when answering, not when the list changed: each answer carries the lab clock the
      // parts follow (src/protocol/lab-clock.ts); a held poll answers at least every HOLD_MS.
      return {
        ...list,
        ...(deps.feeds ? { [FEED_FIELD]: deps.feeds.envelope('revocations', list) } : {}),
        [LAB_TIME_FIELD]: Math.floor(now()),
      };
    },
  );
};

/**
 * Admin (behind the lab token, see admin.ts): revoking and reinstating users, quarantining and
 * releasing services; each answers once the change is stored and published.
 */
export const adminRevocationRoutes: FastifyPluginAsync<RevocationRouteDeps> = async (admin, deps) => {
  const { store, revocations: book } = deps;
  const change =
    <R extends object>(fn: (name: string) => Promise<R>) =>
    async (request: FastifyRequest<{ Params: { name: string } }>) => {
      const result = await fn(request.params.name);
      return { ...result, propagation: await book.publish() };
    };
  admin.post<{ Params: { name: string } }>(
    '/v1/admin/users/:name/revoke',
    { schema: { params: NAME_PARAM } },
    change((name) => revokeUserIn(store, name, 'admin')),
  );
  admin.post<{ Params: { name: string } }>(
    '/v1/admin/users/:name/reinstate',
    { schema: { params: NAME_PARAM } },
    change((name) => reinstateUserIn(store, name, 'admin')),
  );
  admin.post<{ Params: { name: string } }>(
    '/v1/admin/services/:name/quarantine',
    { schema: { params: NAME_PARAM } },
    change((name) => quarantineIn(store, name, 'admin')),
  );
  admin.post<{ Params: { name: string } }>(
    '/v1/admin/services/:name/release',
    { schema: { params: NAME_PARAM } },
    change((name) => releaseIn(store, name, 'admin')),
  );
};
