import { readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ProofError } from '../../protocol/proof.js';

/** The file, in the gateway's state folder. */
export const PROOFS_AHEAD_FILE = 'proofs-ahead.json';
/** Tickets whose proofs run ahead at once; past it a proof stamped ahead is refused, not forgotten. */
export const MAX_TICKETS_AHEAD = 10_000;

/**
 * The proofs a gateway accepted **stamped ahead of its clock** (a client whose clock runs fast, up
 * to the proof window), kept in a file that outlives the gateway: jti → the newest such stamp.
 *
 * A restarted gateway refuses the proofs of earlier tickets stamped before its start (its replay
 * cache is empty), which covers every proof accepted before it, except those stamped ahead: the
 * third clock red team captured a request from a client 20-25 s fast, had the gateway killed and
 * restarted, and replayed it once (200). The next gateway refuses those too (`aheadOfStart`).
 *
 * Written before the proof is accepted (temp file and rename, no fsync: it must survive the
 * gateway's process, which a kill ends, not the machine, whose restart ends the lab's sessions with
 * it), only for proofs stamped ahead, so a lab whose clients share its clock never writes it. An
 * entry goes once the clock has passed its stamp: a gateway starting after that refuses the proof
 * by its start time alone. A write that fails refuses the proof (`SERVICE_UNAVAILABLE`): accepted
 * unrecorded, it could be replayed after a restart.
 */
export class ProofsAheadLog {
  readonly #file: string;
  readonly #now: () => number;
  readonly #entries: Map<string, number>;

  constructor(dir: string, now: () => number = Date.now) {
    this.#file = join(dir, PROOFS_AHEAD_FILE);
    this.#now = now;
    this.#entries = readEntries(this.#file);
  }

  /** What an earlier gateway accepted ahead, still ahead of the clock now: `aheadOfStart`. */
  earlier(): ReadonlyMap<string, number> {
    this.#prune();
    return new Map(this.#entries);
  }

  /** Records that a proof of `jti` stamped `t` is about to be accepted; throws to refuse it. */
  record(jti: string, t: number): void {
    const before = this.#entries.get(jti);
    if (before !== undefined && before >= t) return;
    this.#prune();
    if (before === undefined && this.#entries.size >= MAX_TICKETS_AHEAD) {
      throw new ProofError('RATE_LIMITED', 'too many requests, try again shortly', 'replay-cache-full');
    }
    this.#entries.set(jti, t);
    try {
      this.#write();
    } catch (err) {
      if (before === undefined) this.#entries.delete(jti);
      else this.#entries.set(jti, before);
      throw new ProofError(
        'SERVICE_UNAVAILABLE',
        `the gateway cannot record a proof stamped ahead of its clock: ${(err as Error).message}`,
        'ahead-unrecorded',
      );
    }
  }

  #prune(): void {
    const now = this.#now();
    for (const [jti, t] of this.#entries) if (t <= now) this.#entries.delete(jti);
  }

  #write(): void {
    const tmp = `${this.#file}.${process.pid}.tmp`;
    try {
      writeFileSync(tmp, JSON.stringify({ v: 1, ahead: Object.fromEntries(this.#entries) }), { mode: 0o600 });
      renameSync(tmp, this.#file);
    } catch (err) {
      try {
        unlinkSync(tmp);
      } catch {
        // not written at all
      }
      throw err;
    }
  }
}

const JTI_RE = /^[A-Za-z0-9_-]{16,128}$/;

/**
 * The entries of the file; none when there is none. A file that cannot be read or parsed is not
 * ignored: the gateway would then accept the replays it is for, so it refuses to start.
 */
function readEntries(file: string): Map<string, number> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw err;
  }
  const parsed = JSON.parse(text) as { v?: unknown; ahead?: unknown };
  if (parsed.v !== 1 || typeof parsed.ahead !== 'object' || parsed.ahead === null) {
    throw new Error(`${file} is not a record of proofs stamped ahead`);
  }
  const out = new Map<string, number>();
  for (const [jti, t] of Object.entries(parsed.ahead)) {
    if (JTI_RE.test(jti) && typeof t === 'number' && Number.isSafeInteger(t)) out.set(jti, t);
  }
  return out;
}
