import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { createServer as createTlsServer, type TLSSocket, connect as tlsConnect } from 'node:tls';

/**
 * The attacker's man in the middle: a TCP proxy on 127.0.0.1 put on a service-to-service link. It
 * records the bytes it relays in both directions (bounded) and can rewrite what the callee sends
 * back: in plain HTTP it adds a forged record to a JSON `records` answer (fixing Content-Length);
 * on a TLS link it cannot read anything, so it flips one byte in each encrypted record the callee
 * sends once the caller's application data has started (what a rewrite of ciphertext amounts to).
 * With `tls` it terminates TLS itself, with whatever certificate the attacker has.
 * It closes itself after `lifetimeMs` in any case.
 */
export interface ProxyOptions {
  /** where the intercepted link really goes */
  upstream: { host: string; port: number };
  /** rewrite the callee's answers */
  tamper?: boolean;
  /** terminate TLS with this certificate (the attacker's own), then relay to the upstream over TLS */
  tls?: { certPem: string; keyPem: string };
  /** the record added to a `records` answer when tampering */
  forged?: Record<string, unknown>;
  /** bytes kept per direction (default 1 MiB) */
  maxRecordedBytes?: number;
  /** default 60 s */
  lifetimeMs?: number;
  /** where to listen (default 127.0.0.1; a container listens on its lab network) */
  host?: string;
  /** told after anything it recorded or counted changed (a program writes its record out) */
  onChange?: () => void;
  /** told when it closes (its lifetime is over) */
  onClose?: () => void;
}

export interface ProxyStats {
  connections: number;
  bytesUp: number;
  bytesDown: number;
  /** the caller opened with a TLS handshake */
  sawTls: boolean;
  /** plain HTTP answers rewritten */
  httpRewrites: number;
  /** encrypted TLS records altered */
  tlsRecordsAltered: number;
  /** what went wrong on the proxy's side (a caller refusing its certificate shows here) */
  errors: string[];
}

export function emptyProxyStats(): ProxyStats {
  return {
    connections: 0,
    bytesUp: 0,
    bytesDown: 0,
    sawTls: false,
    httpRewrites: 0,
    tlsRecordsAltered: 0,
    errors: [],
  };
}

const TLS_HANDSHAKE = 0x16;
const TLS_APPLICATION_DATA = 0x17;

export class InterceptingProxy {
  readonly #opts: ProxyOptions;
  readonly #up: Buffer[] = [];
  readonly #down: Buffer[] = [];
  readonly #sockets = new Set<Socket>();
  readonly #stats: ProxyStats = emptyProxyStats();
  #server: Server | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: ProxyOptions) {
    this.#opts = opts;
  }

  /** Listens on 127.0.0.1 or `host` (`port` 0 = any free one) and returns the port. */
  async listen(port = 0): Promise<number> {
    const server = this.#opts.tls
      ? createTlsServer({ cert: this.#opts.tls.certPem, key: this.#opts.tls.keyPem }, (s) =>
          this.#terminated(s),
        )
      : createServer((s) => this.#relay(s));
    server.on('tlsClientError', (err: Error) => this.#error(`caller refused the handshake: ${err.message}`));
    server.on('connection', (s: Socket) => {
      this.#stats.connections += 1;
      this.#track(s);
    });
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, this.#opts.host ?? '127.0.0.1', () => resolve());
    });
    this.#timer = setTimeout(() => void this.close(), this.#opts.lifetimeMs ?? 60_000);
    this.#timer.unref();
    return (server.address() as { port: number }).port;
  }

  /** Stops listening and cuts every relayed connection. Idempotent. */
  async close(): Promise<void> {
    clearTimeout(this.#timer);
    for (const s of this.#sockets) s.destroy();
    const server = this.#server;
    this.#server = undefined;
    if (server) await new Promise<void>((r) => server.close(() => r()));
    if (server) this.#opts.onClose?.();
  }

  /** Everything the caller sent, as far as it was recorded. */
  bytesUp(): Buffer {
    return Buffer.concat(this.#up);
  }

  /** Everything the callee sent back, as far as it was recorded. */
  bytesDown(): Buffer {
    return Buffer.concat(this.#down);
  }

  stats(): ProxyStats {
    return { ...this.#stats, errors: [...this.#stats.errors] };
  }

  /** Plain TCP relay: record, and rewrite the callee's side when tampering. */
  #relay(caller: Socket): void {
    const callee = tcpConnect(this.#opts.upstream);
    this.#track(callee);
    const down = this.#opts.tamper ? this.#rewriter() : (b: Buffer) => b;
    let clientAppRecords = 0;
    let first = true;
    const upRecords = new TlsRecordSplitter((record) => {
      if (record[0] === TLS_APPLICATION_DATA) clientAppRecords += 1;
      return record;
    });
    caller.on('data', (chunk: Buffer) => {
      if (first) {
        first = false;
        if (chunk[0] === TLS_HANDSHAKE) this.#stats.sawTls = true;
      }
      if (this.#stats.sawTls) upRecords.push(chunk);
      this.#record(this.#up, chunk, 'up');
      callee.write(chunk);
    });
    // Down: the callee's bytes, altered once the caller's own encrypted data has started (its
    // Finished is the first application-data record it sends, its request the second).
    const tlsDown = new TlsRecordSplitter((record) => {
      if (record[0] === TLS_APPLICATION_DATA && clientAppRecords >= 2 && record.length > 5) {
        const altered = Buffer.from(record);
        const i = altered.length - 1;
        altered[i] = (altered[i] as number) ^ 0x01;
        this.#stats.tlsRecordsAltered += 1;
        this.#opts.onChange?.();
        return altered;
      }
      return record;
    });
    callee.on('data', (chunk: Buffer) => {
      this.#record(this.#down, chunk, 'down');
      if (this.#opts.tamper && this.#stats.sawTls) {
        for (const out of tlsDown.push(chunk)) caller.write(out);
      } else {
        const out = down(chunk);
        if (out.length > 0) caller.write(out);
      }
    });
    this.#pair(caller, callee);
  }

  /** TLS terminated here: the plaintext is the proxy's to read, relayed on over TLS to the callee. */
  #terminated(caller: TLSSocket): void {
    this.#stats.sawTls = true;
    const callee = tlsConnect({ ...this.#opts.upstream, rejectUnauthorized: false });
    this.#track(callee);
    const down = this.#opts.tamper ? this.#rewriter() : (b: Buffer) => b;
    caller.on('data', (chunk: Buffer) => {
      this.#record(this.#up, chunk, 'up');
      callee.write(chunk);
    });
    callee.on('data', (chunk: Buffer) => {
      this.#record(this.#down, chunk, 'down');
      const out = down(chunk);
      if (out.length > 0) caller.write(out);
    });
    this.#pair(caller, callee);
  }

  /** Either side closing cuts the other, and their failures are the proxy's errors to report. */
  #pair(caller: Socket, callee: Socket): void {
    const cut = () => {
      caller.destroy();
      callee.destroy();
    };
    caller.on('close', cut);
    callee.on('close', cut);
    caller.on('error', (e) => this.#error(`caller: ${e.message}`));
    callee.on('error', (e) => this.#error(`callee: ${e.message}`));
  }

  /** Plain HTTP answers in, the same answers out with a forged record added to `records`. */
  #rewriter(): (chunk: Buffer) => Buffer {
    let pending = Buffer.alloc(0);
    let gaveUp = false;
    return (chunk) => {
      if (gaveUp) return chunk;
      pending = Buffer.concat([pending, chunk]);
      const out: Buffer[] = [];
      for (;;) {
        const end = pending.indexOf('\r\n\r\n');
        if (end === -1) break;
        const head = pending.subarray(0, end).toString('latin1');
        const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
        if (m === null) {
          // Chunked or unknown framing: relay the rest as it is.
          gaveUp = true;
          out.push(pending);
          pending = Buffer.alloc(0);
          break;
        }
        const length = Number(m[1]);
        if (pending.length < end + 4 + length) break;
        const body = pending.subarray(end + 4, end + 4 + length);
        const rewritten = this.#forge(body);
        out.push(
          Buffer.from(`${head.replace(m[0], `\r\ncontent-length: ${rewritten.length}`)}\r\n\r\n`, 'latin1'),
        );
        out.push(rewritten);
        pending = pending.subarray(end + 4 + length);
      }
      return Buffer.concat(out);
    };
  }

  #forge(body: Buffer): Buffer {
    try {
      const doc = JSON.parse(body.toString('utf8')) as { records?: unknown };
      if (!Array.isArray(doc.records)) return body;
      doc.records.push(this.#opts.forged ?? { id: 'forged-by-mitm' });
      this.#stats.httpRewrites += 1;
      this.#opts.onChange?.();
      return Buffer.from(JSON.stringify(doc), 'utf8');
    } catch {
      return body;
    }
  }

  #record(into: Buffer[], chunk: Buffer, dir: 'up' | 'down'): void {
    const max = this.#opts.maxRecordedBytes ?? 1024 * 1024;
    const seen = dir === 'up' ? this.#stats.bytesUp : this.#stats.bytesDown;
    if (seen < max) into.push(chunk.subarray(0, max - seen));
    if (dir === 'up') this.#stats.bytesUp += chunk.length;
    else this.#stats.bytesDown += chunk.length;
    this.#opts.onChange?.();
  }

  #track(s: Socket): void {
    this.#sockets.add(s);
    s.on('close', () => this.#sockets.delete(s));
  }

  #error(message: string): void {
    if (this.#stats.errors.length < 20) this.#stats.errors.push(message.slice(0, 200));
    this.#opts.onChange?.();
  }
}

/** Cuts a TLS byte stream into whole records (5-byte header + length), whatever the chunking. */
export class TlsRecordSplitter {
  #pending = Buffer.alloc(0);
  constructor(private readonly map: (record: Buffer) => Buffer) {}

  push(chunk: Buffer): Buffer[] {
    this.#pending = Buffer.concat([this.#pending, chunk]);
    const out: Buffer[] = [];
    while (this.#pending.length >= 5) {
      const total = 5 + this.#pending.readUInt16BE(3);
      if (this.#pending.length < total) break;
      out.push(this.map(this.#pending.subarray(0, total)));
      this.#pending = this.#pending.subarray(total);
    }
    return out;
  }
}
