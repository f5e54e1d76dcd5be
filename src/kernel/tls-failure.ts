import { isTrustedMsError } from '../errors.js';

// OpenSSL's and node's names for a handshake that did not prove the server (or reached no TLS server).
const TLS_CODES = /^(ERR_TLS_|ERR_SSL_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|CERT_)/;

/**
 * Whether a connection failed because the TLS handshake did: a server without the expected identity
 * (our checkServerIdentity refuses it with PEER_CERTIFICATE_INVALID), a certificate from another CA,
 * or plain HTTP where TLS was expected. Follows `cause`, where wrappers keep the original error.
 */
export function isTlsFailure(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 4; depth++) {
    if (isTrustedMsError(e) && e.code === 'PEER_CERTIFICATE_INVALID') return true;
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && TLS_CODES.test(code)) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}
