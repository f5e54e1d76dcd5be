import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CERT_BACKDATE_MS } from '../../pki/ca.js';
import { IDENTITY_CERT_FILE } from '../../pki/identity-files.js';

/**
 * Identity renewal (links:mtls), run by the watchman: every part's certificate is replaced at
 * about half its lifetime, SPIRE-style. A service's new identity comes only with a measurement of
 * its code made for this renewal, reported to the security service in the same call, which
 * issues it only when that measurement is trusted and the service is not quarantined; so an
 * untrusted service's certificate runs out within one lifetime even if nothing else stops it.
 * The gateway and the watchman are not measured: their identities are renewed as asked. The parts pick up the new
 * files themselves (src/pki/identity-watch.ts).
 */

/** The parts whose identity is renewed without a measurement: they run no sample code. */
export type UnmeasuredHolder = 'gateway' | 'supervisor';

/** A part holding an identity, and the folder where it reads it. */
export interface HeldIdentity {
  part: string;
  kind: 'service' | UnmeasuredHolder;
  dir: string;
}

export interface CertificateTimes {
  serial: string;
  /** ms since the epoch */
  notBefore: number;
  notAfter: number;
}

/** What a renewal writes: the PEMs the part reads. */
export interface IssuedIdentity {
  certPem: string;
  keyPem: string;
}

export interface RenewalDeps {
  /** the parts holding identities right now */
  held(): Promise<HeldIdentity[]>;
  /** the certificate in a folder, or undefined when there is none to read */
  current(dir: string): Promise<CertificateTimes | undefined>;
  /**
   * Measures these services now and asks for identities with the measurement: an identity for each
   * one the security service found trusted and not quarantined, and the state it found for each.
   */
  renewServices(
    parts: string[],
  ): Promise<{ identities: Record<string, IssuedIdentity>; states: Record<string, string> }>;
  /** a new identity for the gateway or the watchman itself */
  renewUnmeasured(kind: UnmeasuredHolder): Promise<IssuedIdentity>;
  /** writes an identity where its part reads it (atomically, key 0600) */
  write(dir: string, identity: IssuedIdentity): Promise<void>;
  now?: () => number;
}

export interface RenewalOutcome {
  part: string;
  outcome: 'renewed' | 'refused' | 'failed';
  /** renewed: the new certificate's serial and expiry */
  serial?: string;
  notAfter?: string;
  /** refused: the service's attestation state, or why nothing was issued; failed: the error */
  reason?: string;
}

/** After a refusal, a part is measured and asked again this much later (not on every look). */
export const RETRY_AFTER_REFUSAL_MS = 5000;
/** How often the watchman looks whether an identity is due. */
export const RENEWAL_LOOK_MS = 1000;

/**
 * When a certificate is due for renewal: half-way between its issue and its expiry. The issue is
 * CERT_BACKDATE_MS after notBefore (certificates are back-dated for clocks behind).
 */
export function renewalDueAt(cert: Pick<CertificateTimes, 'notBefore' | 'notAfter'>): number {
  const issued = Math.min(cert.notBefore + CERT_BACKDATE_MS, cert.notAfter);
  return issued + (cert.notAfter - issued) / 2;
}

export class IdentityRenewal {
  readonly #deps: RenewalDeps;
  readonly #now: () => number;
  /** part → when it may be asked for again after a refusal */
  readonly #retryAt = new Map<string, number>();

  constructor(deps: RenewalDeps) {
    this.#deps = deps;
    this.#now = deps.now ?? Date.now;
  }

  /** One look: renews every identity that is due (or unreadable), and says what happened to each. */
  async round(): Promise<RenewalOutcome[]> {
    const now = this.#now();
    const due: HeldIdentity[] = [];
    for (const held of await this.#deps.held()) {
      if ((this.#retryAt.get(held.part) ?? 0) > now) continue;
      const cert = await this.#deps.current(held.dir).catch(() => undefined);
      if (cert === undefined || now >= renewalDueAt(cert)) due.push(held);
    }
    if (due.length === 0) return [];
    const outcomes: RenewalOutcome[] = [];
    const services = due.filter((h) => h.kind === 'service');
    if (services.length > 0) {
      try {
        const { identities, states } = await this.#deps.renewServices(services.map((s) => s.part));
        for (const s of services) {
          const identity = identities[s.part];
          if (identity === undefined) {
            this.#retryAt.set(s.part, now + RETRY_AFTER_REFUSAL_MS);
            outcomes.push({ part: s.part, outcome: 'refused', reason: states[s.part] ?? 'not measured' });
            continue;
          }
          outcomes.push(await this.#write(s, identity));
        }
      } catch (err) {
        for (const s of services) outcomes.push(failed(s.part, err));
      }
    }
    for (const g of due) {
      if (g.kind === 'service') continue;
      try {
        outcomes.push(await this.#write(g, await this.#deps.renewUnmeasured(g.kind)));
      } catch (err) {
        outcomes.push(failed(g.part, err));
      }
    }
    return outcomes;
  }

  async #write(held: HeldIdentity, identity: IssuedIdentity): Promise<RenewalOutcome> {
    try {
      const cert = new X509Certificate(identity.certPem);
      await this.#deps.write(held.dir, identity);
      this.#retryAt.delete(held.part);
      return { part: held.part, outcome: 'renewed', serial: cert.serialNumber, notAfter: cert.validTo };
    } catch (err) {
      return failed(held.part, err);
    }
  }
}

function failed(part: string, err: unknown): RenewalOutcome {
  const e = err as { code?: unknown; message?: unknown };
  return {
    part,
    outcome: 'failed',
    reason: `${typeof e.code === 'string' ? `${e.code}: ` : ''}${String(e.message ?? err).slice(0, 200)}`,
  };
}

/** The certificate's serial and validity, read from an identity folder. */
export async function certificateTimes(dir: string): Promise<CertificateTimes> {
  const cert = new X509Certificate(await readFile(join(dir, IDENTITY_CERT_FILE), 'utf8'));
  return {
    serial: cert.serialNumber,
    notBefore: Date.parse(cert.validFrom),
    notAfter: Date.parse(cert.validTo),
  };
}
