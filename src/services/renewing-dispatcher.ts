import { Dispatcher } from 'undici';

/**
 * A dispatcher that can be swapped for a new one while clients keep holding it: with links:mtls a
 * part's connections present its certificate, so when the identity is renewed new requests must go
 * through connections made with the renewed one (the old certificate runs out, and the security
 * service refuses a kept-alive connection whose certificate has). The old dispatcher finishes the
 * requests it has in flight (close() waits for them) and goes.
 */
export class RenewingDispatcher extends Dispatcher {
  #current: Dispatcher;
  readonly #make: () => Dispatcher;

  constructor(make: () => Dispatcher) {
    super();
    this.#make = make;
    this.#current = make();
  }

  /** New requests go through a new dispatcher; the old one closes after its in-flight requests. */
  renew(): void {
    const old = this.#current;
    this.#current = this.#make();
    void old.close().catch(() => undefined);
  }

  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    return this.#current.dispatch(options, handler);
  }

  /** Drops the current dispatcher's connections (the part is stopping). */
  async stop(): Promise<void> {
    await this.#current.destroy();
  }
}
