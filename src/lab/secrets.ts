import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface LabSecretFiles {
  labTokenFile: string;
  sealKeyFile: string;
  ticketKeyFile: string;
}

/**
 * The lab's secrets, made fresh at every `lab up`, each in its own 0600 file: the token of the
 * admin and internal APIs, the key that seals session keys for the gateway, and the security
 * service's ticket-signing key.
 */
export async function createLabSecrets(dir: string): Promise<LabSecretFiles & { labToken: string }> {
  const files: LabSecretFiles = {
    labTokenFile: join(dir, 'lab-token'),
    sealKeyFile: join(dir, 'seal-key'),
    ticketKeyFile: join(dir, 'ticket-key.pem'),
  };
  const labToken = randomBytes(32).toString('base64url');
  const { privateKey } = generateKeyPairSync('ed25519');
  await writeFile(files.labTokenFile, `${labToken}\n`, { mode: 0o600, flag: 'wx' });
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
