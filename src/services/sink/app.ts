import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { TrustedMsError } from '../../errors.js';
import { createHttpApp } from '../http.js';

/**
 * The attacker's sink: a small HTTP server that records whatever is sent to it (any method, any
 * path), so a scenario can prove data theft by what actually arrived. Reading or clearing what it
 * holds needs its read token (never the lab token: anyone may hold its port): the records are real
 * lab data.
 */

/** One request the sink received. */
export interface SinkRecord {
  /** increasing from 1; a scenario reads what came after the last one it saw */
  seq: number;
  at: string;
  /** the sender's address */
  from: string;
  method: string;
  path: string;
  contentType?: string;
  /** the body as text, at most `maxBodyBytes` */
  body: string;
}

export interface SinkDeps {
  readToken: string;
  /** records kept (oldest dropped first); default 1,000 */
  maxRecords?: number;
  /** bytes of a body kept; default 64 KiB (the lab's body limit) */
  maxBodyBytes?: number;
  now?: () => Date;
}

export interface SinkRecordsBody {
  records: SinkRecord[];
  /** the seq of the last record received (0 when none yet) */
  last: number;
  /** records dropped because the sink was full */
  dropped: number;
}

export function buildSink(deps: SinkDeps): FastifyInstance {
  const maxRecords = deps.maxRecords ?? 1000;
  const maxBody = deps.maxBodyBytes ?? 64 * 1024;
  const now = deps.now ?? (() => new Date());
  const tokenDigest = sha256(deps.readToken);
  let records: SinkRecord[] = [];
  let last = 0;
  let dropped = 0;

  const app = createHttpApp();
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  const requireToken = (request: FastifyRequest): void => {
    const h = request.headers.authorization;
    const given = typeof h === 'string' && h.toLowerCase().startsWith('bearer ') ? h.slice(7) : '';
    if (!timingSafeEqual(sha256(given), tokenDigest)) {
      throw new TrustedMsError('ADMIN_TOKEN_INVALID', 'sink read token invalid');
    }
  };

  app.get('/healthz', async () => ({ ok: true, part: 'sink', records: records.length }));

  app.get<{ Querystring: { after?: string } }>('/records', async (request): Promise<SinkRecordsBody> => {
    requireToken(request);
    const after = Number(request.query.after ?? 0);
    if (!Number.isInteger(after) || after < 0)
      throw new TrustedMsError('INVALID_INPUT', 'after: a seq number');
    return { records: records.filter((r) => r.seq > after), last, dropped };
  });

  app.delete('/records', async (request) => {
    requireToken(request);
    const cleared = records.length;
    records = [];
    return { cleared, last };
  });

  const collect = async (request: FastifyRequest) => {
    const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
    last += 1;
    const contentType = request.headers['content-type'];
    records.push({
      seq: last,
      at: now().toISOString(),
      from: request.ip,
      method: request.method,
      path: request.url.slice(0, 512),
      ...(typeof contentType === 'string' ? { contentType: contentType.slice(0, 128) } : {}),
      body: raw.subarray(0, maxBody).toString('utf8'),
    });
    if (records.length > maxRecords) {
      dropped += records.length - maxRecords;
      records = records.slice(-maxRecords);
    }
    return { ok: true, seq: last };
  };
  // Everything else is the attacker's drop box.
  app.all('/', collect);
  app.all('/*', collect);
  return app;
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}
