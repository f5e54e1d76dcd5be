import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildSink, type SinkRecordsBody } from '../../../src/services/sink/app.js';

const TOKEN = 'lab-token-for-the-sink-test';

describe('the attacker sink', () => {
  const app = buildSink({ readToken: TOKEN, maxRecords: 3 });
  beforeAll(() => app.ready());
  afterAll(() => app.close());
  const read = async (after = 0) =>
    (
      await app.inject({
        method: 'GET',
        url: `/records?after=${after}`,
        headers: { authorization: `Bearer ${TOKEN}` },
      })
    ).json() as SinkRecordsBody;

  it('records whatever is sent to it, any method and path', async () => {
    const a = await app.inject({
      method: 'POST',
      url: '/customers',
      payload: '{"stolen":"cust-1"}',
      headers: { 'content-type': 'application/json' },
    });
    expect(a.statusCode).toBe(200);
    await app.inject({
      method: 'PUT',
      url: '/x/y?z=1',
      payload: 'plain text',
      headers: { 'content-type': 'text/plain' },
    });
    const { records, last } = await read();
    expect(last).toBe(2);
    expect(records.map((r) => [r.seq, r.method, r.path, r.body])).toEqual([
      [1, 'POST', '/customers', '{"stolen":"cust-1"}'],
      [2, 'PUT', '/x/y?z=1', 'plain text'],
    ]);
    expect((await read(1)).records.map((r) => r.seq)).toEqual([2]);
  });

  it('keeps a bounded number of records, counting what it dropped', async () => {
    for (let i = 0; i < 4; i++) await app.inject({ method: 'POST', url: '/more', payload: `${i}` });
    const { records, dropped, last } = await read();
    expect(records).toHaveLength(3);
    expect(last).toBe(6);
    expect(dropped).toBe(3);
  });

  it('shows and clears what it holds only with the lab token', async () => {
    const no = await app.inject({ method: 'GET', url: '/records' });
    expect(no.statusCode).toBe(401);
    expect(no.json()).toMatchObject({ code: 'ADMIN_TOKEN_INVALID' });
    const wrong = await app.inject({
      method: 'DELETE',
      url: '/records',
      headers: { authorization: 'Bearer nope' },
    });
    expect(wrong.statusCode).toBe(401);
    const bad = await app.inject({
      method: 'GET',
      url: '/records?after=-1',
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(bad.statusCode).toBe(400);
    const ok = await app.inject({
      method: 'DELETE',
      url: '/records',
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(ok.json()).toMatchObject({ cleared: 3 });
    expect((await read()).records).toEqual([]);
  });
});
