import type { PoolClient } from 'pg';
import { corrupt } from '../audit/errors.js';
import { parseLines } from '../audit/read.js';
import { AUDIT_GENESIS, type AuditRecord, chainRecord, parseLine, stripChain } from '../audit/record.js';
import { type AuditVerifyResult, verifyLines } from '../audit/verify.js';
import type { AuditEntry } from '../schema.js';
import type { AuditLogReader } from '../store.js';
import type { PostgresConnection } from './connection.js';

/** pg_advisory_xact_lock key of the audit log's appenders ('tmsa'). */
const AUDIT_LOCK = 0x746d7361;

interface QueuedAppend {
  entry: AuditEntry;
  resolve: (record: AuditRecord) => void;
  reject: (err: unknown) => void;
}

/**
 * The audit log as the table `audit_log`: one row per record, the record kept as the very JSON text
 * the file log would hold as a line (same format, same hash, same `verifyLines`), so a log moved
 * from one store to the other verifies the same way. Appends are serialised across processes by a
 * transaction-scoped advisory lock, under which the head (last seq and hash) is read; `seq` is the
 * primary key and `prev` unique, so even a writer that skipped the lock could not fork the chain.
 * Appends that arrive while one is in flight go together in the next transaction (one commit).
 */
export class PostgresAuditLog implements AuditLogReader {
  readonly #db: PostgresConnection;
  #queue: QueuedAppend[] = [];
  #flushing: Promise<void> | undefined;

  constructor(db: PostgresConnection) {
    this.#db = db;
  }

  /** What `verify` and errors call the log. */
  get label(): string {
    return `${this.#db.where} (audit_log)`;
  }

  /** Appends one entry and resolves with its record once committed. */
  append(entry: AuditEntry): Promise<AuditRecord> {
    return new Promise<AuditRecord>((resolve, reject) => {
      this.#queue.push({ entry, resolve, reject });
      this.#flushing ??= this.#flush();
    });
  }

  /** Waits for queued appends. */
  async close(): Promise<void> {
    while (this.#flushing !== undefined) await this.#flushing;
  }

  async records(): Promise<AuditRecord[]> {
    return parseLines(this.label, await this.#texts('SELECT record FROM audit_log ORDER BY seq'));
  }

  async entries(): Promise<AuditEntry[]> {
    return (await this.records()).map(stripChain);
  }

  async last(n: number): Promise<AuditRecord[]> {
    if (n <= 0) return [];
    const texts = await this.#texts(
      'SELECT record FROM (SELECT seq, record FROM audit_log ORDER BY seq DESC LIMIT $1) t ORDER BY seq',
      [n],
    );
    return parseLines(this.label, texts);
  }

  /** The next seq: where `follow` starts to see only what comes after now. */
  async size(): Promise<number> {
    return this.#db.withClient(async (client) => {
      const r = await client.query<{ next: string }>(
        'SELECT COALESCE(MAX(seq) + 1, 0) AS next FROM audit_log',
      );
      return Number(r.rows[0]?.next ?? 0);
    });
  }

  async *follow(position: number, signal: AbortSignal, intervalMs = 250): AsyncGenerator<AuditRecord> {
    let next = position;
    while (!signal.aborted) {
      // A log that shrank (restored from a backup) is read again from the start, as the file's is.
      if ((await this.size()) < next) next = 0;
      const texts = await this.#texts('SELECT record FROM audit_log WHERE seq >= $1 ORDER BY seq', [next]);
      for (const record of parseLines(this.label, texts)) {
        next = record.seq + 1;
        yield record;
      }
      await sleep(intervalMs, signal);
    }
  }

  async verify(): Promise<AuditVerifyResult> {
    return verifyLines(this.label, await this.#texts('SELECT record FROM audit_log ORDER BY seq'));
  }

  async #flush(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0);
      try {
        const records = await this.#db.transaction((client) => this.#writeBatch(client, batch));
        for (const [i, p] of batch.entries()) p.resolve(records[i] as AuditRecord);
      } catch (err) {
        for (const p of batch) p.reject(err);
      }
    }
    this.#flushing = undefined;
  }

  async #writeBatch(client: PoolClient, batch: readonly QueuedAppend[]): Promise<AuditRecord[]> {
    await client.query('SELECT pg_advisory_xact_lock($1)', [AUDIT_LOCK]);
    const head = await client.query<{ record: string }>(
      'SELECT record FROM audit_log ORDER BY seq DESC LIMIT 1',
    );
    const last = head.rows[0] === undefined ? undefined : this.#lastRecord(head.rows[0].record);
    let seq = last?.seq ?? -1;
    let hash = last?.hash ?? AUDIT_GENESIS;
    const records: AuditRecord[] = [];
    for (const { entry } of batch) {
      // Through JSON first: what is hashed must be exactly what a reader will parse back.
      const record = chainRecord(JSON.parse(JSON.stringify(entry)) as AuditEntry, seq + 1, hash);
      records.push(record);
      seq = record.seq;
      hash = record.hash;
    }
    await client.query(
      `INSERT INTO audit_log (seq, prev, hash, record)
       SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[])`,
      [
        records.map((r) => r.seq),
        records.map((r) => r.prev),
        records.map((r) => r.hash),
        records.map((r) => JSON.stringify(r)),
      ],
    );
    return records;
  }

  /** Never chain onto a record that cannot be read: that would hide the damage (as the file log). */
  #lastRecord(text: string): AuditRecord {
    try {
      return parseLine(text);
    } catch (err) {
      throw corrupt(this.label, `the last record: ${(err as Error).message}`);
    }
  }

  #texts(sql: string, params: unknown[] = []): Promise<string[]> {
    return this.#db.withClient(async (client) => {
      const r = await client.query<{ record: string }>(sql, params);
      return r.rows.map((row) => row.record);
    });
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}
