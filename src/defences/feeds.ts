import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { isTrustedMsError, TrustedMsError } from '../errors.js';
import { type FeedName, type FeedTrust, FeedVerifier, type HeldFeed } from '../protocol/signed-feed.js';
import type { Defences } from './presets.js';

/**
 * The `feeds` defence: what a part takes from the control plane's feeds (the ticket keys, the
 * attestation table, the revocation list). `plain`: whatever the security service's address answers,
 * kept in force for as long as nothing newer comes (a frozen or held-back control plane leaves the
 * parts on their last list for ever). `signed`: only a feed signed with a key of the part's trust
 * bundle, for this lab, never older than the one it holds, and never acted on once older than the
 * lab's maximum staleness: the requests that depend on it are refused with CONTROL_PLANE_STALE
 * (503) until a fresh feed arrives.
 *
 * Its own defence, not part of `links:mtls`: mutual TLS proves who answers, a signature proves what
 * the security service said and when. A frozen security service (SIGSTOP) still holds its TLS
 * identity and its connections; only the feed's age shows that it said nothing for too long. And
 * each can be removed alone (`--without feeds:signed`), so the ablation names which one blocks what.
 */
export interface FeedGuard {
  readonly kind: Defences['feeds'];
  /**
   * The body of feed `name` in a security-service answer, checked (`parse`) and, when signed,
   * verified; nothing is recorded unless all of it passed. Throws the refusal's code.
   */
  open<T>(name: FeedName, answer: unknown, parse: (body: unknown) => T): T;
  /** Before a request that acts on these feeds: CONTROL_PLANE_STALE when one is too old (signed only). */
  assertFresh(): void;
  /** For /healthz and `lab status`: which feeds are held, how old, and whether any is stale. */
  status(): FeedStatus;
  /** Stops the watch (`watch`). */
  close(): void;
}

export interface FeedStatus {
  kind: Defences['feeds'];
  stale: boolean;
  maxAgeMs?: number;
  feeds?: Partial<Record<FeedName, HeldFeed & { ageMs: number }>>;
}

export const PLAIN_FEEDS: FeedGuard = Object.freeze({
  kind: 'plain' as const,
  open: <T>(_name: FeedName, answer: unknown, parse: (body: unknown) => T): T => parse(answer),
  assertFresh: () => undefined,
  status: (): FeedStatus => ({ kind: 'plain', stale: false }),
  close: () => undefined,
});

/** How often a signed guard looks whether it went stale or fresh again (for its log and status file). */
const WATCH_MS = 1000;

export class SignedFeeds implements FeedGuard {
  readonly kind = 'signed' as const;
  readonly #verifier: FeedVerifier;
  /** the feeds the part acts on per request (the keys are taken once, at start) */
  readonly #tracked: readonly FeedName[];
  #timer: NodeJS.Timeout | undefined;
  #wasStale: boolean | undefined;

  constructor(
    trust: FeedTrust,
    labId: string,
    now: () => number,
    tracked: readonly FeedName[],
    readonly log: (line: string) => void = () => undefined,
  ) {
    this.#verifier = new FeedVerifier(trust, labId, now);
    this.#tracked = tracked;
  }

  open<T>(name: FeedName, answer: unknown, parse: (body: unknown) => T): T {
    try {
      return this.#verifier.open(name, answer, parse).body;
    } catch (err) {
      // Logged where it happened, with its code, once per refused answer (a few seconds apart).
      const code = isTrustedMsError(err) ? err.code : 'FEED_INVALID';
      this.log(`feeds: refused a ${name} feed: ${code}: ${(err as Error).message.slice(0, 200)}`);
      throw err;
    }
  }

  /** Per request: one lab-clock read and a subtraction per tracked feed. */
  assertFresh(): void {
    for (const name of this.#tracked) {
      if (this.#verifier.age(name) > this.#verifier.maxAgeMs) {
        throw new TrustedMsError(
          'CONTROL_PLANE_STALE',
          `this part's ${name} feed is older than the lab's maximum of ${this.#verifier.maxAgeMs / 1000} s: not acting on it until a fresh one arrives`,
        );
      }
    }
  }

  status(): FeedStatus {
    const feeds: FeedStatus['feeds'] = {};
    let stale = false;
    for (const name of this.#tracked) {
      const held = this.#verifier.held(name);
      const ageMs = this.#verifier.age(name);
      if (ageMs > this.#verifier.maxAgeMs) stale = true;
      if (held) feeds[name] = { ...held, ageMs: Math.round(ageMs) };
    }
    return { kind: 'signed', stale, maxAgeMs: this.#verifier.maxAgeMs, feeds };
  }

  /**
   * Looks every second whether the part went stale or fresh again: says so in its log, and writes
   * its status to `statusFile` (for `lab status`) at each change.
   */
  watch(statusFile: string | undefined): void {
    this.#timer = setInterval(() => {
      const status = this.status();
      // Not yet started (no feed taken): nothing to say; the part does not serve before it has them.
      if (this.#wasStale === undefined && status.stale) return;
      if (status.stale === this.#wasStale) return;
      this.#wasStale = status.stale;
      const ages = Object.entries(status.feeds ?? {})
        .map(([n, f]) => `${n} ${Math.round(f.ageMs / 1000)} s`)
        .join(', ');
      this.log(
        status.stale
          ? `feeds: CONTROL_PLANE_STALE: a feed is older than ${this.#verifier.maxAgeMs / 1000} s (${ages || 'none held'}): refusing the requests that depend on it`
          : `feeds: fresh again (${ages}): serving`,
      );
      if (statusFile !== undefined) writeStatus(statusFile, { ...status, at: new Date().toISOString() });
    }, WATCH_MS);
    this.#timer.unref();
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

function writeStatus(file: string, status: FeedStatus & { at: string }): void {
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    writeFileSync(`${file}.tmp`, `${JSON.stringify(status)}\n`, { mode: 0o644 });
    renameSync(`${file}.tmp`, file);
  } catch {
    // A status file is a convenience for `lab status`; the log line above is the record.
  }
}

/** The feed guard a part with these defences uses (its config's `feedTrust` with feeds:signed). */
export function feedsFor(
  choice: Defences['feeds'],
  config: { labId: string; feedTrust?: FeedTrust | undefined; feedStatusFile?: string | undefined },
  now: () => number,
  tracked: readonly FeedName[],
  log?: (line: string) => void,
): FeedGuard {
  if (choice === 'plain') return PLAIN_FEEDS;
  if (config.feedTrust === undefined) {
    throw new TrustedMsError('INVALID_INPUT', 'signed feeds need feedTrust in the part config');
  }
  const guard = new SignedFeeds(config.feedTrust, config.labId, now, tracked, log);
  guard.watch(config.feedStatusFile);
  return guard;
}
