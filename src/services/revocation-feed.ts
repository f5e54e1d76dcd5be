import { setTimeout as sleep } from 'node:timers/promises';
import { type Dispatcher, request } from 'undici';
import type { FeedGuard } from '../defences/feeds.js';
import { isTrustedMsError, TrustedMsError } from '../errors.js';
import { ReplicaSet } from '../kernel/replica-set.js';
import { isTlsFailure } from '../kernel/tls-failure.js';
import { type LabClock, labTimeOf } from '../protocol/lab-clock.js';
import { parseRevocationList, type RevocationList, RevocationView } from '../protocol/revocation-list.js';
import { fromErrorBody } from './http.js';
import { controlPlaneUntrusted } from './security-client.js';

export interface RevocationFeedOptions {
  /** this part's name, sent so the security service can count who confirmed a change */
  part: string;
  /** the lab token, when this part holds it (the feed is readable without it) */
  token?: string;
  dispatcher?: Dispatcher;
  log?: (line: string) => void;
  /** this part's lab clock, moved forward to the lab time every answer carries */
  clock?: LabClock;
  /** feeds:signed: only the list in a verified envelope is taken (src/defences/feeds.ts) */
  feeds?: FeedGuard;
}

/** Longer than the security service holds a poll (HOLD_MS, 20 s), so a quiet poll is not an error. */
const POLL_TIMEOUT_MS = 30_000;
const RETRY_MIN_MS = 100;
// Short: a refused connection costs nothing, and a part must be back on the feed well within 1 s of
// the security service coming back (a change made then must reach it within 1 s).
const RETRY_MAX_MS = 500;

/**
 * How the gateway and the services keep their copy of the revocation list (`view`): a long poll on
 * the security service's `GET /v1/revocations?since=<version>`, asked again as soon as it answers,
 * so a change arrives in one round trip. When the security service is unreachable (restarting), the
 * last list stays in force and the poll is retried with a growing pause (0.1 s to 0.5 s); after a
 * restart its version changes, so the list is fetched whole again at once. Every answer carries the
 * lab time, which moves the part's lab clock forward (`clock`): a security service restarted ahead
 * is followed within one answer. With replicas (issue 17) it follows one and moves to the next
 * whenever a poll fails; every replica publishes what any of them changed (LISTEN/NOTIFY on the
 * store), and a new replica's version differs, so the list is fetched whole from it at once.
 */
export class RevocationFeed {
  readonly view = new RevocationView();
  readonly #replicas: ReplicaSet;
  readonly #opts: RevocationFeedOptions;
  readonly #abort = new AbortController();
  #loop: Promise<void> | undefined;

  constructor(securityUrls: string | readonly string[], opts: RevocationFeedOptions) {
    this.#replicas = new ReplicaSet(typeof securityUrls === 'string' ? [securityUrls] : securityUrls);
    this.#opts = opts;
  }

  /** Fetches the list once (retrying for up to `deadlineMs`), then keeps it current in the background. */
  async start(deadlineMs = 10_000): Promise<void> {
    const deadline = performance.now() + deadlineMs;
    for (;;) {
      try {
        this.view.replace(await this.#fetch(undefined));
        break;
      } catch (err) {
        if (isTlsFailure(err)) throw controlPlaneUntrusted(this.#url, 'fetching the revocation list', err);
        this.#moveOn();
        if (performance.now() > deadline || this.#abort.signal.aborted) {
          throw new TrustedMsError(
            'SERVICE_UNAVAILABLE',
            `fetching the revocation list failed: ${(err as Error).message}`,
          );
        }
        await sleep(RETRY_MIN_MS);
      }
    }
    this.#loop = this.#run();
  }

  async stop(): Promise<void> {
    this.#abort.abort();
    await this.#loop;
  }

  async #run(): Promise<void> {
    let pause = RETRY_MIN_MS;
    while (!this.#abort.signal.aborted) {
      try {
        const list = await this.#fetch(this.view.version);
        if (list.version !== this.view.version) this.view.replace(list);
        pause = RETRY_MIN_MS;
      } catch (err) {
        if (this.#abort.signal.aborted) return;
        // A listener that is not the security service is named as such: the last list stays in force.
        const why = isTlsFailure(err)
          ? `CONTROL_PLANE_UNTRUSTED: ${controlPlaneUntrusted(this.#url, 'polling', err).message}`
          : isTrustedMsError(err)
            ? `${err.code}: ${err.message}`
            : (err as Error).message;
        this.#moveOn();
        this.#opts.log?.(`revocation feed: ${why.slice(0, 200)}; retrying in ${pause} ms`);
        await sleep(pause, undefined, { signal: this.#abort.signal }).catch(() => undefined);
        pause = Math.min(pause * 2, RETRY_MAX_MS);
      }
    }
  }

  get #url(): string {
    return this.#replicas.sticky()[0] as string;
  }

  /** The next replica, if there is another: the one followed did not answer. */
  #moveOn(): void {
    const next = this.#replicas.sticky()[1];
    if (next !== undefined) this.#replicas.answered(next);
  }

  async #fetch(since: string | undefined): Promise<RevocationList> {
    const q = new URLSearchParams({ part: this.#opts.part, ...(since ? { since } : {}) });
    const res = await request(`${this.#url}/v1/revocations?${q}`, {
      method: 'GET',
      headers: this.#opts.token ? { authorization: `Bearer ${this.#opts.token}` } : {},
      headersTimeout: POLL_TIMEOUT_MS,
      bodyTimeout: POLL_TIMEOUT_MS,
      signal: this.#abort.signal,
      ...(this.#opts.dispatcher ? { dispatcher: this.#opts.dispatcher } : {}),
    });
    const text = await res.body.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    if (res.statusCode >= 400) throw fromErrorBody(res.statusCode, body);
    // The clock first: a signed list's age is judged on it. An answer's lab time only ever moves
    // the clock forward, so a false one can make feeds look older (refused), never younger.
    const labTime = labTimeOf(body);
    if (labTime !== undefined) this.#opts.clock?.adopt(labTime);
    return this.#opts.feeds
      ? this.#opts.feeds.open('revocations', body, parseRevocationList)
      : parseRevocationList(body);
  }
}
