import { createHash } from 'node:crypto';

/**
 * A part's own credential for the security service (src/defences/part-credentials.ts): the part
 * holds the secret (a 0600 file), the security service only its digest, in one index file that
 * names every part. Shared by the lab, which writes them, and the security service, which reads them.
 */
export interface PartCredentialIndex {
  /** part name → base64url SHA-256 of its secret */
  parts: Record<string, string>;
}

export function credentialDigest(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('base64url');
}
