import { createPrivateKey, X509Certificate } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { IDENTITY_CERT_FILE, readIdentity } from './identity-files.js';
import type { ServiceIdentity } from './spiffe.js';

/**
 * Polled, not `fs.watch`ed. Measured here (2 cores, busy): one `stat` costs ~30 us of CPU, so a
 * look a second is ~0.003% of a core per part, lost in the ~450 us/s a Node process idles at,
 * while `fs.watch` depends on the filesystem (inotify through a Docker bind mount, none on some
 * network filesystems) and a watch on the file itself is lost when a renewal renames a new file
 * over it. A second of delay is nothing next to a half-life of at least five.
 */
export const IDENTITY_POLL_MS = 1000;

/**
 * Follows a part's identity folder (`cert.pem`, `key.pem`, replaced by the watchman's renewals,
 * each file atomically) and hands every new, consistent identity to `onIdentity`. A certificate
 * and key that do not belong together (read between the two renames), a certificate naming
 * another SPIFFE id, or unreadable files are skipped and looked at again on the next poll: the
 * part keeps the identity it has.
 */
export class IdentityFileWatch {
  readonly #dir: string;
  readonly #spiffeId: string;
  readonly #onIdentity: (identity: ServiceIdentity) => void;
  readonly #log: (line: string) => void;
  #seen: string | undefined;
  /** inode, mtime and size of cert.pem when last taken: unchanged means nothing to read */
  #lastMark: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  #busy = false;

  constructor(
    dir: string,
    current: ServiceIdentity,
    onIdentity: (identity: ServiceIdentity) => void,
    opts: { log?: (line: string) => void; intervalMs?: number } = {},
  ) {
    this.#dir = dir;
    this.#spiffeId = current.spiffeId;
    this.#onIdentity = onIdentity;
    this.#log = opts.log ?? (() => undefined);
    this.#seen = serialOf(current.certPem);
    this.#timer = setInterval(() => void this.check(), opts.intervalMs ?? IDENTITY_POLL_MS);
    this.#timer.unref();
  }

  /** One look at the folder (the timer calls it; tests may too). True when a new identity was taken. */
  async check(): Promise<boolean> {
    if (this.#busy) return false;
    this.#busy = true;
    try {
      const mark = await stat(join(this.#dir, IDENTITY_CERT_FILE)).then(
        (s) => `${s.ino}:${s.mtimeMs}:${s.size}`,
        () => undefined,
      );
      if (mark === undefined || mark === this.#lastMark) return false;
      const identity = await readIdentity(this.#dir).catch(() => undefined);
      if (identity === undefined || !consistent(identity)) return false;
      this.#lastMark = mark;
      const serial = serialOf(identity.certPem);
      if (serial === this.#seen) return false;
      if (identity.spiffeId !== this.#spiffeId) {
        this.#log(`identity: ${this.#dir} holds another identity (${identity.spiffeId}); kept mine`);
        return false;
      }
      this.#seen = serial;
      this.#onIdentity(identity);
      this.#log(
        `identity: renewed certificate ${serial} taken, valid until ${identity.notAfter.toISOString()}`,
      );
      return true;
    } finally {
      this.#busy = false;
    }
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

function serialOf(certPem: string): string | undefined {
  try {
    return new X509Certificate(certPem).serialNumber;
  } catch {
    return undefined;
  }
}

/** The key is the certificate's, and the certificate is valid now. */
function consistent(identity: ServiceIdentity): boolean {
  try {
    const cert = new X509Certificate(identity.certPem);
    const now = Date.now();
    return (
      cert.checkPrivateKey(createPrivateKey(identity.keyPem)) &&
      Date.parse(cert.validFrom) <= now &&
      now <= Date.parse(cert.validTo)
    );
  } catch {
    return false;
  }
}
