import { TrustedMsError } from '../errors.js';

/**
 * A streaming reader of tar archives (POSIX ustar, GNU and PAX), fed chunk by chunk: headers are
 * checked and decoded, extended headers (PAX `path`/`linkpath`/`size`, GNU long names) are applied
 * to the entry they describe, and each entry's content is handed over as it arrives, never
 * buffered. What an entry means (hashing it, refusing a type) is the caller's business. A corrupt
 * or truncated archive is INVALID_INPUT.
 */

/** One archive entry, its extended headers applied. */
export interface TarEntryHeader {
  /** The type flag: `0`/`\0`/`7` file, `1` hard link, `2` symlink, `5` folder (others passed on as they are). */
  type: string;
  /** Full name (ustar prefix, PAX `path` or GNU long name applied), as in the archive. */
  name: string;
  /** Target of a link (PAX `linkpath` or GNU long link name applied). */
  linkName: string;
  mode: number;
  /** Content bytes that follow the header. */
  size: number;
}

/** Receives an entry's content. */
export interface TarBody {
  data(chunk: Buffer): void;
  end(): void;
}

/** Called once per entry; the content is given to the body it returns, or skipped without one. */
export type TarEntryHandler = (entry: TarEntryHeader) => TarBody | undefined;

interface PendingMeta {
  path?: string;
  linkpath?: string;
  size?: number;
}

const MAX_META_BYTES = 1024 * 1024;

function invalid(message: string, cause?: unknown): TrustedMsError {
  return new TrustedMsError('INVALID_INPUT', message, cause === undefined ? {} : { cause });
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function cString(block: Buffer, start: number, length: number): string {
  const field = block.subarray(start, start + length);
  const nul = field.indexOf(0);
  try {
    return utf8.decode(nul === -1 ? field : field.subarray(0, nul));
  } catch (cause) {
    throw invalid('tar entry name is not valid UTF-8', cause);
  }
}

/** Octal ASCII (NUL/space terminated) or GNU base-256 (high bit of the first byte set). */
function tarNumber(block: Buffer, start: number, length: number, what: string): number {
  const field = block.subarray(start, start + length);
  if ((field[0]! & 0x80) !== 0) {
    if ((field[0]! & 0x40) !== 0) throw invalid(`corrupt tar header: negative ${what}`);
    let value = field[0]! & 0x3f;
    for (let i = 1; i < field.length; i++) value = value * 256 + field[i]!;
    if (!Number.isSafeInteger(value)) throw invalid(`corrupt tar header: ${what} too large`);
    return value;
  }
  const text = field
    .toString('latin1')
    .replace(/[\0 ]+$/, '')
    .replace(/^[ ]+/, '');
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw invalid(`corrupt tar header: ${what} is not an octal number`);
  return Number.parseInt(text, 8);
}

function verifyChecksum(block: Buffer): void {
  const stored = tarNumber(block, 148, 8, 'checksum');
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < 512; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  if (stored !== unsigned && stored !== signed)
    throw invalid('corrupt tar archive: header checksum mismatch');
}

function parsePax(data: Buffer): PendingMeta {
  const meta: PendingMeta = {};
  let off = 0;
  while (off < data.length) {
    const space = data.indexOf(0x20, off);
    if (space === -1) throw invalid('corrupt tar archive: bad PAX record');
    const length = Number.parseInt(data.toString('latin1', off, space), 10);
    if (!Number.isSafeInteger(length) || length <= space - off || off + length > data.length) {
      throw invalid('corrupt tar archive: bad PAX record length');
    }
    const record = data.subarray(space + 1, off + length);
    if (record[record.length - 1] !== 0x0a) throw invalid('corrupt tar archive: PAX record without newline');
    const eq = record.indexOf(0x3d);
    if (eq === -1) throw invalid('corrupt tar archive: PAX record without "="');
    const key = record.toString('utf8', 0, eq);
    let value: string;
    try {
      value = utf8.decode(record.subarray(eq + 1, record.length - 1));
    } catch (cause) {
      throw invalid('tar PAX value is not valid UTF-8', cause);
    }
    if (key === 'path') meta.path = value;
    else if (key === 'linkpath') meta.linkpath = value;
    else if (key === 'size') {
      if (!/^[0-9]+$/.test(value)) throw invalid('corrupt tar archive: bad PAX size');
      meta.size = Number(value);
      if (!Number.isSafeInteger(meta.size)) throw invalid('corrupt tar archive: PAX size too large');
    }
    off += length;
  }
  return meta;
}

export class TarReader {
  private readonly header = Buffer.alloc(512);
  private headerFill = 0;
  private remaining = 0;
  private padding = 0;
  private body: TarBody | undefined;
  private ended = false;
  private pending: PendingMeta = {};

  constructor(private readonly onEntry: TarEntryHandler) {}

  write(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.remaining > 0) {
        const n = Math.min(this.remaining, chunk.length - off);
        this.body?.data(chunk.subarray(off, off + n));
        off += n;
        this.remaining -= n;
        if (this.remaining === 0) this.endBody();
      } else if (this.padding > 0) {
        const n = Math.min(this.padding, chunk.length - off);
        off += n;
        this.padding -= n;
      } else if (this.ended) {
        return; // zero blocks padding the archive to its record size, or anything after the end marker
      } else {
        const n = Math.min(512 - this.headerFill, chunk.length - off);
        chunk.copy(this.header, this.headerFill, off, off + n);
        this.headerFill += n;
        off += n;
        if (this.headerFill === 512) {
          this.headerFill = 0;
          this.onHeader(this.header);
        }
      }
    }
  }

  /** Throws when the archive stopped before its end-of-archive marker. */
  end(): void {
    if (!this.ended || this.remaining > 0 || this.headerFill > 0) {
      throw invalid('truncated tar archive: it ends before its end-of-archive marker');
    }
  }

  private endBody(): void {
    const body = this.body;
    this.body = undefined;
    body?.end();
  }

  private startBody(size: number, body: TarBody | undefined): void {
    this.body = body;
    this.remaining = size;
    this.padding = (512 - (size % 512)) % 512;
    if (size === 0) this.endBody();
  }

  private collect(size: number, what: string, done: (data: Buffer) => void): void {
    if (size > MAX_META_BYTES) throw invalid(`corrupt tar archive: ${what} of ${size} bytes`);
    const parts: Buffer[] = [];
    this.startBody(size, { data: (c) => parts.push(Buffer.from(c)), end: () => done(Buffer.concat(parts)) });
  }

  private onHeader(block: Buffer): void {
    if (block.every((b) => b === 0)) {
      this.ended = true;
      return;
    }
    verifyChecksum(block);
    const type = String.fromCharCode(block[156]!);
    const magic = block.toString('latin1', 257, 263);
    const ustarPrefix = magic === 'ustar\0' ? cString(block, 345, 155) : '';
    const headerName = cString(block, 0, 100);
    const rawName = ustarPrefix === '' ? headerName : `${ustarPrefix}/${headerName}`;
    const headerSize = tarNumber(block, 124, 12, 'size');

    // Extended headers describe the next entry.
    if (type === 'x') {
      this.collect(headerSize, 'PAX header', (data) => {
        this.pending = { ...this.pending, ...parsePax(data) };
      });
      return;
    }
    if (type === 'g') {
      this.collect(headerSize, 'PAX global header', () => {});
      return;
    }
    if (type === 'L' || type === 'K') {
      this.collect(headerSize, 'GNU long name', (data) => {
        const nul = data.indexOf(0);
        const value = cString(data, 0, nul === -1 ? data.length : nul);
        if (type === 'L') this.pending.path ??= value;
        else this.pending.linkpath ??= value;
      });
      return;
    }

    const meta = this.pending;
    this.pending = {};
    const size = meta.size ?? headerSize;
    const name = meta.path ?? rawName;
    const linkName = meta.linkpath ?? cString(block, 157, 100);
    const mode = tarNumber(block, 100, 8, 'mode');
    this.startBody(size, this.onEntry({ type, name, linkName, mode, size }));
  }
}
