import type { KeyObject } from 'node:crypto';
import { type FeedEnvelope, type FeedName, signFeed } from '../../protocol/signed-feed.js';

/**
 * The security service's side of the signed feeds (feeds:signed): one signed issue per feed, kept
 * and served as is until what it says changes or it is a sixth of the maximum staleness old, then
 * issued again with a higher version (the heartbeat: a quiet lab never goes stale, and a flood of
 * feed reads costs no signatures). A sixth, not a third: with the revocation poll answered as often
 * (main.ts), a part's list is at most about two heartbeats (a third of the bound) old on a quiet
 * lab, so it goes stale only after the control plane was silent for about two thirds of the bound,
 * not after a few seconds of a slow security service. Versions are the lab time of the issue in ms, and at least one
 * more than the last: every replica runs on the lab's one clock (lab-clock-mark.ts), so a part that
 * moves to another replica gets a version that is not older than the one it held, give or take the
 * moment between two issues.
 */
export class FeedSigner {
  readonly #issued = new Map<FeedName, { content: string; envelope: FeedEnvelope; issuedAt: number }>();
  #lastVersion = 0;
  /** how old an issue may be before it is issued again: a sixth of the maximum staleness */
  readonly reissueMs: number;

  constructor(
    readonly key: { kid: string; privateKey: KeyObject },
    readonly labId: string,
    readonly now: () => number,
    readonly maxAgeMs: number,
  ) {
    this.reissueMs = Math.max(500, Math.floor(maxAgeMs / 6));
  }

  /** The current signed issue of feed `name`, whose body is `body`. */
  envelope(name: FeedName, body: unknown): FeedEnvelope {
    const content = JSON.stringify(body);
    const now = Math.floor(this.now());
    const held = this.#issued.get(name);
    if (held !== undefined && held.content === content && now - held.issuedAt < this.reissueMs) {
      return held.envelope;
    }
    const version = Math.max(now, this.#lastVersion + 1);
    this.#lastVersion = version;
    const envelope = signFeed(this.key, { lab: this.labId, name, version, issuedAt: now, body });
    this.#issued.set(name, { content, envelope, issuedAt: now });
    return envelope;
  }
}
