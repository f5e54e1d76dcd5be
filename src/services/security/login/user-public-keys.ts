import { createPublicKey, type KeyObject } from 'node:crypto';
import { describeKey } from '../../../crypto/keys.js';
import { TrustedMsError } from '../../../errors.js';
import type { UserKey } from '../../../store/schema.js';

/**
 * A registered key as a KeyObject, parsed once per key: parsing PEM on every login is 5-7x slower
 * (DESIGN.md).
 */
export function userPublicKeys(): (k: UserKey) => KeyObject {
  const parsedKeys = new Map<string, KeyObject>();
  return (k: UserKey): KeyObject => {
    let key = parsedKeys.get(k.publicKeyPem);
    if (key === undefined) {
      key = createPublicKey(k.publicKeyPem);
      // A key registered before keys were checked where they are stored may be unsound (a small-
      // order Ed25519 point, RSA with e = 1): nothing signed with it counts.
      try {
        describeKey(key);
      } catch {
        throw new TrustedMsError('SIGNATURE_INVALID', 'signature verification failed');
      }
      if (parsedKeys.size >= 10_000) parsedKeys.clear();
      parsedKeys.set(k.publicKeyPem, key);
    }
    return key;
  };
}
