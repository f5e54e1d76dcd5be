import { readFile, stat } from 'node:fs/promises';
import { type Adapter, Low } from 'lowdb';
import { fileError } from '../disk-errors.js';
import { errnoCode, isTrustedMsError, TrustedMsError } from '../errors.js';
import { writeFileDurably } from '../fs-sync.js';
import { DEFAULT_LOCK_SETTINGS, type LockSettings, lockStoreFile } from './file-lock.js';
import { serialised } from './in-process-queue.js';
import type { Validator } from './schema.js';

export interface JsonFileStoreOptions<T> {
  file: string;
  /** The data of a file that does not exist yet; written on the first update. */
  initial: () => T;
  validate: Validator<T>;
  lock?: Partial<LockSettings>;
  /**
   * Keep the data in memory between calls: for the one process that is the file's writer while a
   * lab runs (the security service). Reads then cost a `stat` instead of a read and a parse, and
   * come back deep-frozen (shared, never to be changed by the caller).
   */
  resident?: boolean;
}

function ioError(file: string, what: string, err: unknown): TrustedMsError {
  return fileError(file, what, err, { write: what !== 'read' && what !== 'validate' });
}

/** lowdb's adapter for our files: every write durable (see writeFileDurably), the file 0600. */
class DurableJsonFile<T> implements Adapter<T> {
  constructor(readonly file: string) {}
  async read(): Promise<T | null> {
    // Reads go through JsonFileStore.#load, which tells a missing file from a `null` one.
    throw new Error('DurableJsonFile is write-only');
  }
  async write(data: T): Promise<void> {
    await writeFileDurably(this.file, JSON.stringify(data, null, 2), 0o600);
  }
}

/** Which version of the file is on disk: a write renames a new inode in, with a new mtime. */
type FileVersion = string;

async function versionOf(file: string): Promise<FileVersion | undefined> {
  try {
    const s = await stat(file, { bigint: true });
    return `${s.ino}:${s.size}:${s.mtimeNs}`;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

function deepFreeze<V>(value: V): V {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/**
 * One JSON file held by lowdb 7, safe to share between processes.
 *
 * Every write is a read-modify-write under a proper-lockfile lock (lowdb alone races between
 * processes, see ENVIRONMENT.md), made durable before it resolves: temp file, fsync, rename, fsync
 * of the folder, so an acknowledged write survives a crash (kill -9, power loss). Readers need no
 * lock: they see the old file or the new one. A file that cannot be read or does not have our shape
 * is never written to.
 *
 * `resident` (the security service while a lab runs): the data stays in memory and the lock is
 * still taken for each write, not held for the lab's lifetime. Writes there are rare (admin
 * commands, attestations; a login writes nothing), a held lock would make any other writer wait
 * for its timeout instead of a few ms, and a lock left by a killed service would stall its
 * restart until it goes stale. The file's version (inode, size, mtime) is checked before each use
 * of the memory copy, so a write by another process under the lock is never overwritten or missed.
 */
export class JsonFileStore<T> {
  readonly file: string;
  readonly #initial: () => T;
  readonly #validate: Validator<T>;
  readonly #lock: LockSettings;
  readonly #db: Low<T>;
  readonly #resident: boolean;
  #cache: { version: FileVersion; data: T } | undefined;

  constructor(options: JsonFileStoreOptions<T>) {
    this.file = options.file;
    this.#initial = options.initial;
    this.#validate = options.validate;
    this.#lock = { ...DEFAULT_LOCK_SETTINGS, ...options.lock };
    this.#resident = options.resident === true;
    // The initial data is only a placeholder: `#load` always replaces it before a write.
    this.#db = new Low<T>(new DurableJsonFile<T>(this.file), this.#initial());
  }

  /**
   * The file's current data, or the initial data if it does not exist yet (nothing is written).
   * In resident mode the object is shared and frozen.
   */
  async read(): Promise<T> {
    const loaded = await this.#load();
    return loaded.exists ? loaded.data : this.#initial();
  }

  /**
   * Lock, re-read from disk (or from memory when the file has not changed), apply `fn`, write
   * durably if anything changed (or the file is new), unlock. If `fn` throws, nothing is written
   * and the error propagates.
   */
  update<R>(fn: (data: T) => R | Promise<R>): Promise<R> {
    return serialised(this.file, async () => {
      const lock = await lockStoreFile(this.file, this.#lock);
      try {
        const loaded = await this.#load();
        // The memory copy is shared with readers: change a copy of it.
        const data = loaded.exists
          ? this.#resident
            ? structuredClone(loaded.data)
            : loaded.data
          : this.#initial();
        const before = loaded.exists ? JSON.stringify(data) : undefined;
        const result = await fn(data);
        if (before === undefined || JSON.stringify(data) !== before) {
          lock.assertHeld('writing');
          await this.#write(data);
        }
        return result;
      } finally {
        await lock.release();
      }
    });
  }

  async #load(): Promise<{ exists: true; data: T } | { exists: false }> {
    if (!this.#resident) return this.#loadFile();
    let version: FileVersion | undefined;
    try {
      version = await versionOf(this.file);
    } catch (err) {
      throw ioError(this.file, 'read', err);
    }
    if (version === undefined) {
      this.#cache = undefined;
      return { exists: false };
    }
    if (this.#cache?.version === version) return { exists: true, data: this.#cache.data };
    const loaded = await this.#loadFile();
    // Stamped with the version seen before reading: if the file changed in between, the next use
    // sees another version and reads again.
    if (loaded.exists) this.#cache = { version, data: deepFreeze(loaded.data) };
    return loaded;
  }

  async #loadFile(): Promise<{ exists: true; data: T } | { exists: false }> {
    // Read here rather than through lowdb's adapter: it answers `null` both for a missing file and
    // for a file holding `null`, and the second must be refused, not replaced by the initial data.
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return { exists: false };
      throw ioError(this.file, 'read', err);
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (err) {
      throw new TrustedMsError('STORE_CORRUPT', `${this.file} is not valid JSON`, {
        cause: err,
        actions: [
          `restore ${this.file} from a backup, or move it away to start with an empty store`,
          'the file was left untouched',
        ],
      });
    }
    try {
      return { exists: true, data: this.#validate(raw, this.file) };
    } catch (err) {
      if (isTrustedMsError(err)) throw err;
      throw ioError(this.file, 'validate', err);
    }
  }

  async #write(data: T): Promise<void> {
    try {
      this.#db.data = data;
      await this.#db.write();
      if (this.#resident) {
        const version = await versionOf(this.file);
        this.#cache = version === undefined ? undefined : { version, data: deepFreeze(data) };
      }
    } catch (err) {
      this.#cache = undefined;
      throw ioError(this.file, 'write', err);
    }
  }
}
