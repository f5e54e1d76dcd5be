import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

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
  return { ...files, labToken };
}
