import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type FeedTrustKey, feedTrustKey } from '../protocol/signed-feed.js';
import { securityPartName } from './security-replicas.js';

export interface LabSecretFiles {
  labTokenFile: string;
  /**
   * The one credential that reads the attacker's sink (what `attack simulate` judges by), never the
   * lab token: the sink is a plain part nobody can prove, and a fake on its port collected the lab
   * token from `attack simulate` (second control-plane red team, finding 1).
   */
  sinkTokenFile: string;
  sealKeyFile: string;
  ticketKeyFile: string;
  /**
   * feeds:signed: the security service's feed-signing key (Ed25519, 0600), of its own so that a
   * ticket key never signs a feed nor a feed key a ticket; made at every `lab up` like the others
   */
  feedKeyFile?: string;
}

/**
 * The lab's secrets, made fresh at every `lab up`, each in its own 0600 file: the token of the
 * admin and internal APIs, the token that reads the sink, the key that seals session keys for the gateway, and the security
 * service's ticket-signing key.
 */
export async function createLabSecrets(dir: string): Promise<LabSecretFiles & { labToken: string }> {
  const files: LabSecretFiles = {
    labTokenFile: join(dir, 'lab-token'),
    sinkTokenFile: join(dir, 'sink-token'),
    sealKeyFile: join(dir, 'seal-key'),
    ticketKeyFile: join(dir, 'ticket-key.pem'),
    feedKeyFile: join(dir, 'feed-key.pem'),
  };
  const labToken = randomBytes(32).toString('base64url');
  const { privateKey } = generateKeyPairSync('ed25519');
  await writeFile(files.labTokenFile, `${labToken}\n`, { mode: 0o600, flag: 'wx' });
  await writeFile(files.sinkTokenFile, `${randomBytes(32).toString('base64url')}\n`, {
    mode: 0o600,
    flag: 'wx',
  });
  await writeFile(files.sealKeyFile, `${randomBytes(32).toString('base64url')}\n`, {
    mode: 0o600,
    flag: 'wx',
  });
  await writeFile(files.ticketKeyFile, privateKey.export({ format: 'pem', type: 'pkcs8' }), {
    mode: 0o600,
    flag: 'wx',
  });
  await writeFile(
    files.feedKeyFile as string,
    generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }),
    { mode: 0o600, flag: 'wx' },
  );
  return { ...files, labToken };
}

/** The trust bundle's entry for the lab's feed key (public), for the parts' configs. */
export async function feedTrustKeyOf(feedKeyFile: string): Promise<FeedTrustKey> {
  return feedTrustKey(createPrivateKey(await readFile(feedKeyFile, 'utf8')));
}

/** One security service replica's ticket-signing key (0600) and its public half (published). */
export interface ReplicaTicketKey {
  part: string;
  privateFile: string;
  publicFile: string;
}

/** Where each replica's ticket key goes: the first is the lab's `ticketKeyFile` (issue 17). */
export function replicaTicketKeyFiles(
  dir: string,
  ticketKeyFile: string,
  replicas: number,
): ReplicaTicketKey[] {
  return Array.from({ length: replicas }, (_, i) => {
    const privateFile = i === 0 ? ticketKeyFile : join(dir, `ticket-key-${i + 1}.pem`);
    const part = securityPartName(i);
    return { part, privateFile, publicFile: join(dir, `${part}-ticket-key.pub.pem`) };
  });
}

/**
 * Writes a key for every replica past the first (the first has the lab's), and every replica's
 * public half, which the others publish with their own.
 */
export async function createReplicaTicketKeys(keys: ReplicaTicketKey[]): Promise<void> {
  if (keys.length < 2) return;
  for (const [i, k] of keys.entries()) {
    if (i > 0) {
      const { privateKey } = generateKeyPairSync('ed25519');
      await writeFile(k.privateFile, privateKey.export({ format: 'pem', type: 'pkcs8' }), {
        mode: 0o600,
        flag: 'wx',
      });
    }
    const publicKey = createPublicKey(createPrivateKey(await readFile(k.privateFile, 'utf8')));
    await writeFile(k.publicFile, publicKey.export({ format: 'pem', type: 'spki' }), {
      mode: 0o644,
      flag: 'wx',
    });
  }
}
