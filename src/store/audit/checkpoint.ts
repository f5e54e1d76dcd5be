import { createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import canonicalizeModule from 'canonicalize';
import { jwkThumbprint } from '../../crypto/thumbprint.js';
import { TrustedMsError } from '../../errors.js';

// canonicalize 2 is CommonJS with an ES-style d.ts (see record.ts).
const canonicalize = canonicalizeModule as unknown as (value: unknown) => string | undefined;

/**
 * A signed checkpoint of the audit log (RFC 9162's signed tree head, over the hash chain instead
 * of a Merkle root): "the log whose first record hashes to `log` had `size` records, the last
 * hashing to `head`, at lab time `at`", signed with Ed25519 by the audit key (`kid`, its RFC 7638
 * thumbprint). The chain alone cannot show a rewrite whose hashes were all recomputed, nor a
 * cut-off tail; a head signed before the rewrite can, as long as the key was out of reach.
 */

export const CHECKPOINT_VERSION = 1;
/** Domain separation: these bytes are never a ticket, a challenge or anything else the lab signs. */
const SIGNING_CONTEXT = 'trusted-ms audit checkpoint v1\n';
const HEX64 = /^[0-9a-f]{64}$/;
const B64URL = /^[A-Za-z0-9_-]+$/;

export interface AuditHead {
  /** the hash of the log's first record: which log this is */
  log: string;
  /** how many records the log held */
  size: number;
  /** the hash of its last record */
  head: string;
  /** when, on the lab clock (ISO 8601) */
  at: string;
}

export interface AuditCheckpoint extends AuditHead {
  v: typeof CHECKPOINT_VERSION;
  /** RFC 7638 thumbprint of the audit public key */
  kid: string;
  /** Ed25519 over the domain-separated canonical JSON of the rest, base64url */
  sig: string;
}

function signedBytes(c: Omit<AuditCheckpoint, 'sig'>): Buffer {
  const { v, log, size, head, at, kid } = c;
  const text = canonicalize({ v, log, size, head, at, kid });
  if (text === undefined) throw new TrustedMsError('INTERNAL', 'checkpoint cannot be canonicalized');
  return Buffer.from(SIGNING_CONTEXT + text, 'utf8');
}

export function signCheckpoint(head: AuditHead, privateKey: KeyObject): AuditCheckpoint {
  const body = { v: CHECKPOINT_VERSION, ...head, kid: jwkThumbprint(privateKey) } as const;
  return { ...body, sig: sign(null, signedBytes(body), privateKey).toString('base64url') };
}

export function invalidCheckpoint(why: string, actions: string[] = []): TrustedMsError {
  return new TrustedMsError('AUDIT_CHECKPOINT_INVALID', `audit checkpoint refused: ${why}`, { actions });
}

/** The shape of one checkpoint (parsed JSON); throws AUDIT_CHECKPOINT_INVALID. */
export function checkCheckpoint(raw: unknown): AuditCheckpoint {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw invalidCheckpoint('not an object');
  const o = raw as Record<string, unknown>;
  if (o.v !== CHECKPOINT_VERSION) throw invalidCheckpoint(`v: expected ${CHECKPOINT_VERSION}`);
  if (typeof o.log !== 'string' || !HEX64.test(o.log)) throw invalidCheckpoint('log: expected a SHA-256 hex');
  if (typeof o.head !== 'string' || !HEX64.test(o.head))
    throw invalidCheckpoint('head: expected a SHA-256 hex');
  if (!Number.isSafeInteger(o.size) || (o.size as number) < 1)
    throw invalidCheckpoint('size: expected an integer ≥ 1');
  if (typeof o.at !== 'string' || Number.isNaN(Date.parse(o.at)) || o.at.length > 40)
    throw invalidCheckpoint('at: expected a time');
  if (typeof o.kid !== 'string' || !B64URL.test(o.kid) || o.kid.length > 64)
    throw invalidCheckpoint('kid: expected a key thumbprint');
  if (typeof o.sig !== 'string' || !B64URL.test(o.sig) || o.sig.length > 200)
    throw invalidCheckpoint('sig: expected a base64url signature');
  const { v, log, size, head, at, kid, sig } = o as unknown as AuditCheckpoint;
  return { v, log, size, head, at, kid, sig };
}

/** Text of a checkpoint file (one JSON object, or the JSON envelope `audit checkpoint --json` prints). */
export function parseCheckpoint(text: string): AuditCheckpoint {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw invalidCheckpoint('not JSON');
  }
  // `audit checkpoint --json` wraps it ({status, result: {checkpoint}}): accept what the command
  // printed as well as what --out wrote.
  const o = raw as { checkpoint?: unknown; result?: { checkpoint?: unknown } } | null;
  return checkCheckpoint(o?.result?.checkpoint ?? o?.checkpoint ?? raw);
}

/** Checks the signature with the audit public key; throws AUDIT_CHECKPOINT_INVALID. */
export function verifyCheckpointSignature(c: AuditCheckpoint, publicKey: KeyObject): void {
  const key = publicKey.type === 'private' ? createPublicKey(publicKey) : publicKey;
  if (jwkThumbprint(key) !== c.kid) {
    throw invalidCheckpoint(`signed by key ${c.kid}, not by this lab's audit key ${jwkThumbprint(key)}`, [
      'check that --home and the key folder (--key-dir, TRUSTED_MS_KEYS) are the lab the checkpoint came from',
    ]);
  }
  let ok = false;
  try {
    ok = verify(null, signedBytes(c), key, Buffer.from(c.sig, 'base64url'));
  } catch {
    ok = false;
  }
  if (!ok) throw invalidCheckpoint(`the signature of the checkpoint of size ${c.size} does not verify`);
}

export type CheckpointProblemKind = 'truncated' | 'rewritten' | 'other-log';

export interface CheckpointProblem {
  kind: CheckpointProblemKind;
  /** the checkpoint's size and time, to name it */
  size: number;
  at: string;
  message: string;
}

/**
 * Is the log whose record hashes are `hashes` (in order) an extension of the log the checkpoint
 * saw? Shorter: records were cut off (truncated). A different hash at the checkpoint's last record
 * or at the first: history up to it was edited, removed or reordered and the chain recomputed.
 */
export function checkAgainst(hashes: readonly string[], c: AuditHead): CheckpointProblem | undefined {
  const name = { size: c.size, at: c.at };
  if (hashes.length > 0 && hashes[0] !== c.log) {
    return {
      kind: hashes.length >= c.size ? 'rewritten' : 'other-log',
      ...name,
      message: `the log's first record is not the one the checkpoint of ${c.at} saw: rewritten from the start, or another log`,
    };
  }
  if (hashes.length < c.size) {
    return {
      kind: 'truncated',
      ...name,
      message: `the log holds ${hashes.length} records, the checkpoint of ${c.at} saw ${c.size}: ${c.size - hashes.length} were cut off (or history was rewritten shorter)`,
    };
  }
  if (hashes[c.size - 1] !== c.head) {
    return {
      kind: 'rewritten',
      ...name,
      message: `record ${c.size - 1} is not the one the checkpoint of ${c.at} saw: records up to it were edited, removed or reordered and the chain recomputed`,
    };
  }
  return undefined;
}

/** The error a problem stands for: a cut-off tail and a rewrite get codes of their own. */
export function checkpointError(p: CheckpointProblem): TrustedMsError {
  const actions = [
    'restore the audit log from a backup taken before that checkpoint, and find who could write the lab home',
  ];
  return p.kind === 'truncated'
    ? new TrustedMsError('AUDIT_TRUNCATED', p.message, { actions })
    : new TrustedMsError('AUDIT_TAMPERED', p.message, { actions });
}
