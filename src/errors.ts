/**
 * One error type for the whole library. Every failure a user can cause carries a stable `code`;
 * the CLI maps the code to an exit status and servers map it to an HTTP status, so scripts and
 * clients can branch on it without parsing messages.
 */

export const ERROR_CODES = {
  // usage and input
  USAGE: { exit: 2, http: 400 },
  INVALID_INPUT: { exit: 2, http: 400 },
  INVALID_NAME: { exit: 2, http: 400 },
  ROUTE_NOT_FOUND: { exit: 2, http: 404 },
  PAYLOAD_TOO_LARGE: { exit: 2, http: 413 },
  HEADERS_TOO_LARGE: { exit: 2, http: 431 },
  REQUEST_TIMEOUT: { exit: 2, http: 408 },
  EXPECTATION_FAILED: { exit: 2, http: 417 },
  POSTURE_MISMATCH: { exit: 2, http: 409 },
  SCENARIO_NOT_FOUND: { exit: 2, http: 404 },
  SCENARIO_INCONCLUSIVE: { exit: 2, http: 500 },
  SCENARIO_UNSUPPORTED: { exit: 2, http: 400 },
  /** an option that needs another runtime than the running lab's (client containers on a process lab) */
  RUNTIME_UNSUPPORTED: { exit: 2, http: 400 },
  /** `lab up --security-replicas` above 1 on a store only one security service can use (the files) */
  REPLICAS_NEED_SHARED_STORE: { exit: 2, http: 400 },
  PASSWORD_REQUIRED: { exit: 2, http: 400 },
  REPORT_WRITE_FAILED: { exit: 2, http: 500 },
  /** `lab export --format` names no format the export writes */
  EXPORT_FORMAT_UNKNOWN: { exit: 2, http: 400 },
  /** `lab export --out` is a folder with files in it, and --force was not given */
  EXPORT_DIR_NOT_EMPTY: { exit: 2, http: 409 },
  /** `lab export --out` cannot be created or written (a file, a read-only disk, no permission) */
  EXPORT_DIR_NOT_WRITABLE: { exit: 6, http: 500 },
  // users, roles, policy
  USER_EXISTS: { exit: 3, http: 409 },
  USER_NOT_FOUND: { exit: 3, http: 404 },
  ROLE_NOT_FOUND: { exit: 3, http: 400 },
  ACCESS_DENIED: { exit: 3, http: 403 },
  ADMIN_TOKEN_INVALID: { exit: 3, http: 401 },
  RECORD_NOT_FOUND: { exit: 3, http: 404 },
  // authentication
  AUTH_FAILED: { exit: 4, http: 401 },
  SIGNATURE_INVALID: { exit: 4, http: 401 },
  ALGORITHM_NOT_ALLOWED: { exit: 4, http: 400 },
  CHALLENGE_EXPIRED: { exit: 4, http: 401 },
  CHALLENGE_UNKNOWN: { exit: 4, http: 401 },
  AUDIENCE_MISMATCH: { exit: 4, http: 401 },
  TICKET_MISSING: { exit: 4, http: 401 },
  TICKET_INVALID: { exit: 4, http: 401 },
  TICKET_EXPIRED: { exit: 4, http: 401 },
  PROOF_INVALID: { exit: 4, http: 401 },
  PROOF_REPLAYED: { exit: 4, http: 401 },
  RATE_LIMITED: { exit: 4, http: 429 },
  ACCOUNT_LOCKED: { exit: 4, http: 423 },
  /** The user is revoked (`user revoke`): the password may be right, the login is refused. */
  USER_REVOKED: { exit: 4, http: 403 },
  /**
   * A login step sent to the security service past the gateway (links:mtls): it takes the steps
   * only from the gateway's identity on its control-plane listener, so that every try passes the
   * gateway's per-address login meters.
   */
  LOGIN_VIA_GATEWAY_ONLY: { exit: 4, http: 403 },
  /** The ticket was issued before its user was revoked: it stays refused, even after a reinstatement. */
  TICKET_REVOKED: { exit: 4, http: 401 },
  // keys
  KEY_EXISTS: { exit: 5, http: 409 },
  KEY_NOT_FOUND: { exit: 5, http: 404 },
  KEY_UNREADABLE: { exit: 5, http: 400 },
  KEY_PERMISSIONS_TOO_OPEN: { exit: 5, http: 400 },
  KEY_INVALID: { exit: 5, http: 400 },
  KEY_TYPE_UNSUPPORTED: { exit: 5, http: 400 },
  /** A user has as many keys as one user may have (users.ts MAX_USER_KEYS). */
  KEY_LIMIT_REACHED: { exit: 5, http: 409 },
  /** The private key is encrypted and no passphrase could be asked for (no terminal, no --passphrase-stdin). */
  KEY_PASSPHRASE_REQUIRED: { exit: 5, http: 400 },
  /** The passphrase does not open the key. */
  KEY_PASSPHRASE_WRONG: { exit: 5, http: 400 },
  /** ssh-agent: not reachable, or holds no key that can sign for the user. */
  AGENT_UNAVAILABLE: { exit: 5, http: 400 },
  // store
  STORE_CORRUPT: { exit: 6, http: 500 },
  STORE_VERSION_UNSUPPORTED: { exit: 6, http: 500 },
  STORE_LOCKED: { exit: 6, http: 503 },
  STORE_IO: { exit: 6, http: 500 },
  /** The store's server (PostgreSQL) does not answer at its address, or dropped the connection. */
  STORE_UNAVAILABLE: { exit: 6, http: 503 },
  /** The store's server refused the lab's credentials (wrong password, no such role, pg_hba). */
  STORE_AUTH_FAILED: { exit: 6, http: 503 },
  /**
   * The file system under a write is full (ENOSPC) or over quota (EDQUOT): nothing was changed, and
   * the same action works again once space is freed, without a restart. 507: the server's storage.
   */
  DISK_FULL: { exit: 6, http: 507 },
  /** The file system under a write is read-only (EROFS) or refuses this user (EACCES, EPERM). */
  DISK_READ_ONLY: { exit: 6, http: 503 },
  /** The audit log's hash chain is broken: an entry was edited, removed or reordered. */
  AUDIT_TAMPERED: { exit: 6, http: 500 },
  /** The audit log holds fewer records than a signed checkpoint saw: its tail was cut off. */
  AUDIT_TRUNCATED: { exit: 6, http: 500 },
  /** A checkpoint that is not one: unreadable, signed by another key, or its signature fails. */
  AUDIT_CHECKPOINT_INVALID: { exit: 6, http: 500 },
  /** No signed checkpoint to export: the lab has no audit key (audit:chain), or nothing was signed yet. */
  AUDIT_CHECKPOINT_MISSING: { exit: 6, http: 404 },
  // services, attestation, the lab
  SERVICE_NOT_FOUND: { exit: 8, http: 404 },
  SERVICE_UNTRUSTED: { exit: 8, http: 503 },
  SERVICE_UNAVAILABLE: { exit: 8, http: 502 },
  /** Nothing listens where the service should be (its process is dead): refused at once, not a hang. */
  SERVICE_DOWN: { exit: 8, http: 503 },
  ATTESTATION_MISMATCH: { exit: 8, http: 409 },
  /** An operator took the service out (`service quarantine`): nobody routes to it until released. */
  SERVICE_QUARANTINED: { exit: 8, http: 503 },
  /** The calling service is quarantined: its peers refuse it whatever certificate it still holds. */
  PEER_QUARANTINED: { exit: 8, http: 403 },
  /** The calling service failed its latest attestation: its peers refuse it whatever certificate it still holds. */
  PEER_UNTRUSTED: { exit: 8, http: 403 },
  PEER_CERTIFICATE_INVALID: { exit: 8, http: 403 },
  /**
   * The calling service is one of this service's callers, but the request is not one the edge's
   * peer policy allows (lab/topology.json `peerCalls`): a ticket relayed for anything else.
   */
  PEER_CALL_NOT_ALLOWED: { exit: 8, http: 403 },
  /**
   * What answers at the security service's control-plane address did not prove to be the security
   * service (links:mtls): no TLS 1.3 handshake with its lab-CA identity. Nothing is sent to it or
   * taken from it; a part starting then does not start.
   */
  CONTROL_PLANE_UNTRUSTED: { exit: 8, http: 503 },
  /**
   * The gateway's HTTPS (edge:tls) did not prove itself with a certificate from the lab CA for its
   * address, or this client was not given the lab CA: nothing was sent, the password included.
   */
  EDGE_CERTIFICATE_UNTRUSTED: { exit: 8, http: 502 },
  /**
   * feeds:signed: a control-plane feed (ticket keys, attestation table, revocation list) that is not
   * one: no signed envelope (unsigned), malformed, signed for another lab or as another feed. The
   * part does not take it and keeps what it held.
   */
  FEED_INVALID: { exit: 8, http: 502 },
  /** feeds:signed: a feed signed with a key that is not in the part's trust bundle. */
  FEED_KEY_UNKNOWN: { exit: 8, http: 502 },
  /** feeds:signed: a feed whose signature does not verify with the key it names. */
  FEED_SIGNATURE_INVALID: { exit: 8, http: 502 },
  /** feeds:signed: a validly signed feed older (by version) than the one the part holds: a replay. */
  FEED_REPLAYED: { exit: 8, http: 502 },
  /**
   * feeds:signed: the control-plane state a request depends on (the revocation list, the
   * attestation table) is older than the lab's maximum staleness (`lab up --feed-max-age`): the part
   * refuses to act on it until a fresh feed arrives.
   */
  CONTROL_PLANE_STALE: { exit: 8, http: 503 },
  LAB_NOT_RUNNING: { exit: 9, http: 503 },
  LAB_ALREADY_RUNNING: { exit: 9, http: 409 },
  LAB_START_FAILED: { exit: 9, http: 500 },
  /** The lab home is writable by group or others, who could then swap its keys, tokens or store. */
  LAB_HOME_UNSAFE: { exit: 9, http: 500 },
  /** The container engine kept refusing an operation (a removal, say) after its retries. */
  ENGINE_OPERATION_FAILED: { exit: 9, http: 500 },
  /** A scenario's revert could not restore the lab: later scenarios are not judged on a changed lab. */
  LAB_NOT_RESTORED: { exit: 9, http: 500 },
  /** A service could not be measured right now (its container is being replaced): no verdict, retried. */
  MEASUREMENT_DEFERRED: { exit: 8, http: 503 },
  // imports
  HTPASSWD_INVALID: { exit: 7, http: 400 },
  HTPASSWD_UNSUPPORTED_FORMAT: { exit: 7, http: 400 },
  FILE_NOT_FOUND: { exit: 7, http: 404 },
  // anything we did not foresee: a bug, reported as such
  INTERNAL: { exit: 70, http: 500 },
} as const satisfies Record<string, { exit: number; http: number }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface ErrorOptions {
  /** What the user can do about it, shown under the message and in JSON. */
  actions?: string[];
  cause?: unknown;
}

export class TrustedMsError extends Error {
  override readonly name = 'TrustedMsError';
  readonly code: ErrorCode;
  readonly actions: string[];

  constructor(code: ErrorCode, message: string, options: ErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.actions = options.actions ?? [];
  }

  get exitCode(): number {
    return ERROR_CODES[this.code].exit;
  }

  get httpStatus(): number {
    return ERROR_CODES[this.code].http;
  }

  toJSON(): { code: ErrorCode; message: string; exitCode: number; actions: string[] } {
    return { code: this.code, message: this.message, exitCode: this.exitCode, actions: this.actions };
  }
}

export function isTrustedMsError(err: unknown, code?: ErrorCode): err is TrustedMsError {
  return err instanceof TrustedMsError && (code === undefined || err.code === code);
}

/** Node's errno code of a failed fs call, if it is one. */
export function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string'
    ? err.code
    : undefined;
}
