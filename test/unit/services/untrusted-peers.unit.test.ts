import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHttpApp } from '../../../src/services/http.js';
import { RevocationFeed } from '../../../src/services/revocation-feed.js';
import { ServiceRegistry } from '../../../src/services/security/registry.js';
import { RevocationBook } from '../../../src/services/security/revocations.js';
import { revocationFeedRoutes } from '../../../src/services/security/routes/revocations.js';
import { openLabStore } from '../../../src/store/open.js';
import type { LabStore } from '../../../src/store/store.js';

/** The revocation feed names the services whose attestation failed, so that their peers refuse them. */
describe('untrusted services in the revocation list', () => {
  let dir: string;
  let store: LabStore;
  let registry: ServiceRegistry;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tms-untrusted-'));
    store = openLabStore(join(dir, 'home'));
    registry = new ServiceRegistry(store, 'measured');
    await registry.register([
      { name: 'orders', hash: 'sha256:good-orders' },
      { name: 'customers', hash: 'sha256:good-customers' },
    ]);
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const measure = (orders: string) =>
    registry.report([
      { name: 'orders', hash: orders, by: 'runtime' },
      { name: 'customers', hash: 'sha256:good-customers', by: 'runtime' },
    ]);

  it('lists a service whose latest measurement failed, and takes it out when it passes again', async () => {
    const book = new RevocationBook(store, { namesUntrusted: true });
    await measure('sha256:good-orders');
    await book.load();
    expect(book.list().untrusted).toEqual([]);
    const before = book.list().version;

    await measure('sha256:tampered');
    await book.attestationsChanged();
    expect(book.list().untrusted).toEqual(['orders']);
    expect(book.list().version).not.toBe(before);

    // nothing changed: no new version for the parts to fetch
    const same = book.list().version;
    await measure('sha256:tampered');
    await book.attestationsChanged();
    expect(book.list().version).toBe(same);

    await measure('sha256:good-orders');
    await book.attestationsChanged();
    expect(book.list().untrusted).toEqual([]);
  });

  it('lists a registered service never measured (the gateway refuses it too)', async () => {
    const book = new RevocationBook(store, { namesUntrusted: true });
    await book.load();
    expect(book.list().untrusted).toEqual(['customers', 'orders']);
  });

  it('lists nobody where peers cannot act on it or nobody measures (every service would stay unknown)', async () => {
    const book = new RevocationBook(store);
    await measure('sha256:tampered');
    await book.load();
    expect(book.list().untrusted).toEqual([]);
  });

  describe('through the feed', () => {
    let app: FastifyInstance;
    let url: string;
    afterEach(async () => {
      await app.close();
    });

    it('reaches a part holding a poll in one round trip', async () => {
      const book = new RevocationBook(store, { namesUntrusted: true });
      await measure('sha256:good-orders');
      await book.load();
      app = createHttpApp();
      app.register(revocationFeedRoutes, { store, revocations: book });
      await app.listen({ host: '127.0.0.1', port: 0 });
      url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
      const feed = new RevocationFeed(url, { part: 'customers' });
      await feed.start();
      try {
        expect(feed.view.untrusted('orders')).toBe(false);
        while (book.listening === 0) await new Promise((r) => setTimeout(r, 10));
        await measure('sha256:tampered');
        await book.attestationsChanged();
        // publish() returns once the listening part confirmed it holds the new list
        expect(feed.view.untrusted('orders')).toBe(true);
        expect(feed.view.untrusted('customers')).toBe(false);
      } finally {
        await feed.stop();
      }
    });
  });
});
