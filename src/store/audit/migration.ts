import { randomUUID } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { errnoCode, TrustedMsError } from '../../errors.js';
import { syncDir } from '../../fs-sync.js';
import { type AuditEntry, validateAuditData } from '../schema.js';
import { ioError } from './errors.js';
import { AUDIT_GENESIS, chainRecord } from './record.js';

/**
 * The audit log of store schema 1 was `audit.json`, a lowdb array of entries without a chain. It
 * is read as it is until the first write migrates it into the chained log.
 */

/** The entries of the legacy `audit.json`; `undefined` when there is none. */
export async function readLegacyAudit(legacyFile: string): Promise<AuditEntry[] | undefined> {
  let text: string;
  try {
    text = await readFile(legacyFile, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw ioError(legacyFile, 'read', err);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new TrustedMsError('STORE_CORRUPT', `${legacyFile} is not valid JSON`, {
      cause: err,
      actions: [`restore ${legacyFile} from a backup, or move it away`, 'the file was left untouched'],
    });
  }
  return validateAuditData(raw, legacyFile).entries;
}

/**
 * Schema-1 `audit.json` → the chained log `file`, once; the caller holds the log's lock. Its
 * entries are chained in order from the genesis, then a `audit.migrate` record says from where the
 * chain vouches for the log (the legacy entries were not tamper-evident before). The old file is
 * kept as `audit.json.migrated`. Only done while no chained log exists, so it can never run twice.
 */
export async function migrateLegacyAudit(file: string, legacyFile: string): Promise<void> {
  try {
    await stat(file); // not the whole log: an append must not read it
    return;
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw ioError(file, 'read', err);
  }
  const legacy = await readLegacyAudit(legacyFile);
  if (legacy === undefined) return;
  let prev = AUDIT_GENESIS;
  const out: string[] = [];
  const all: AuditEntry[] = [
    ...legacy,
    {
      at: new Date().toISOString(),
      actor: 'trusted-ms',
      action: 'audit.migrate',
      outcome: 'ok',
      detail: { from: legacyFile, entries: legacy.length },
    },
  ];
  for (const [seq, entry] of all.entries()) {
    const record = chainRecord(entry, seq, prev);
    out.push(JSON.stringify(record));
    prev = record.hash;
  }
  const tmp = `${file}.${randomUUID()}.tmp`;
  try {
    const handle = await open(tmp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
    try {
      await handle.writeFile(`${out.join('\n')}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, file);
    await rename(legacyFile, `${legacyFile}.migrated`);
    await syncDir(dirname(file));
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw ioError(file, 'migrate the audit log into', err);
  }
}
