import { createPublicKey, type KeyObject } from 'node:crypto';
import { jwkThumbprint } from '../../crypto/thumbprint.js';

/** One ticket-verification key as `/v1/keys` publishes it. */
export interface PublishedTicketKey {
  kid: string;
  alg: 'EdDSA';
  publicKeyPem: string;
}

/**
 * The keys `/v1/keys` publishes: this security service's own first, then every other replica's
 * (issue 17; SPIRE's shared bundle), each once by key id. Every replica publishes the same set, so
 * a part that fetched it from any one accepts the tickets of all. A key id is the key's JWK
 * thumbprint, so two keys can share one only if they are the same key.
 */
export function ticketKeySet(own: KeyObject, others: readonly KeyObject[] = []): PublishedTicketKey[] {
  const byKid = new Map<string, PublishedTicketKey>();
  for (const key of [own, ...others]) {
    const publicKey = key.type === 'private' ? createPublicKey(key) : key;
    const kid = jwkThumbprint(publicKey);
    if (byKid.has(kid)) continue;
    byKid.set(kid, {
      kid,
      alg: 'EdDSA',
      publicKeyPem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
    });
  }
  return [...byKid.values()];
}
