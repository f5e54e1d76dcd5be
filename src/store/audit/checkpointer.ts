import type { KeyObject } from 'node:crypto';
import { type AuditCheckpoint, signCheckpoint } from './checkpoint.js';
import { appendCheckpoint } from './checkpoint-files.js';
import type { AuditRecord } from './record.js';

/**
 * The security service's signer of audit checkpoints: a signed head at least every
 * `everyEntries` records (default 100) and every `everyMs` (default 10 s) while the log grew, at
 * start when the log grew while no lab ran (the CLI's own entries), and at stop (`lab down`).
 * Told of each record its store appended (`observe`); it never reads the log to find the head,
 * except once at start.
 */

export const CHECKPOINT_EVERY_ENTRIES = 100;
export const CHECKPOINT_EVERY_MS = 10_000;

export interface CheckpointerOptions {
  privateKey: KeyObject;
  checkpointsFile: string;
  /** the lab clock (ms) */
  now: () => number;
  /** the log's first record hash and last record now (once, at start) */
  readLog: () => Promise<{ first: AuditRecord | undefined; last: AuditRecord | undefined }>;
  /** the last checkpoint written before this process (once, at start) */
  lastWritten?: AuditCheckpoint;
  everyEntries?: number;
  everyMs?: number;
  log?: (line: string) => void;
}

export class AuditCheckpointer {
  readonly #opts: CheckpointerOptions;
  readonly #everyEntries: number;
  readonly #everyMs: number;
  #log: string | undefined;
  #latest: { size: number; hash: string } | undefined;
  #writtenSize = 0;
  #sinceLast = 0;
  #timer: NodeJS.Timeout | undefined;
  #writing: Promise<void> = Promise.resolve();
  readonly written: AuditCheckpoint[] = [];

  constructor(opts: CheckpointerOptions) {
    this.#opts = opts;
    this.#everyEntries = opts.everyEntries ?? CHECKPOINT_EVERY_ENTRIES;
    this.#everyMs = opts.everyMs ?? CHECKPOINT_EVERY_MS;
    this.#writtenSize = opts.lastWritten?.size ?? 0;
  }

  /** Reads the log's ends, signs a head if the log grew since the last checkpoint, starts the timer. */
  async start(): Promise<void> {
    try {
      const { first, last } = await this.#opts.readLog();
      if (first) this.#log = first.hash;
      if (last) this.#see(last);
      await this.checkpoint();
    } catch (err) {
      // A log that cannot be read is `audit verify`'s to report; this service still starts, and
      // signs heads from its own appends on (with the log id learnt from record 0, if it ever sees it).
      this.#opts.log?.(`audit log not read at start, no checkpoint of it: ${(err as Error).message}`);
    }
    this.#timer = setInterval(() => void this.checkpoint(), this.#everyMs);
    this.#timer.unref();
  }

  /** A record the store appended (in any order: batches resolve together). */
  observe(record: AuditRecord): void {
    if (record.seq === 0) this.#log = record.hash;
    this.#see(record);
    if (++this.#sinceLast >= this.#everyEntries) void this.checkpoint();
  }

  /** Signs and appends a checkpoint of the newest head seen, unless one covers it already. */
  checkpoint(): Promise<void> {
    this.#writing = this.#writing.then(async () => {
      const latest = this.#latest;
      if (latest === undefined || this.#log === undefined || latest.size <= this.#writtenSize) return;
      this.#sinceLast = 0;
      const c = signCheckpoint(
        {
          log: this.#log,
          size: latest.size,
          head: latest.hash,
          at: new Date(this.#opts.now()).toISOString(),
        },
        this.#opts.privateKey,
      );
      try {
        await appendCheckpoint(this.#opts.checkpointsFile, c);
        this.#writtenSize = c.size;
        this.written.push(c);
      } catch (err) {
        this.#opts.log?.(`audit checkpoint of size ${c.size} not written: ${(err as Error).message}`);
      }
    });
    return this.#writing;
  }

  /** The last checkpoint (lab down), then no more. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.checkpoint();
  }

  #see(record: AuditRecord): void {
    if (this.#latest === undefined || record.seq + 1 > this.#latest.size)
      this.#latest = { size: record.seq + 1, hash: record.hash };
  }
}
