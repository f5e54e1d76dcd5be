import { basename, join } from 'node:path';
import type { PartConfig } from '../kernel/part-config.js';
import { partCredentialFileOf, partCredentialIndexFileOf } from '../lab/part-credentials.js';
import type { PlannedPart } from '../lab/plan.js';
import { CA_CERT_FILE, CA_KEY_FILE } from '../pki/ca.js';
import { IDENTITY_CERT_FILE, IDENTITY_KEY_FILE } from '../pki/identity-files.js';
import { CLUSTER_HOME, CLUSTER_LAB_DIR, type ClusterLab } from './cluster-plan.js';

/** A Secret the operator creates; the export names it and its keys, and never holds its content. */
export interface SecretRef {
  name: string;
  /** key → where it comes from, relative to a lab home after `trusted-ms lab up` */
  keys: Record<string, string>;
  what: string;
}

/** Where one path a part reads comes from, inside its container. */
export type PartFile =
  | { path: string; from: 'config' }
  /** `key` absent: the whole Secret is a folder at `path` */
  | { path: string; from: 'secret'; secret: SecretRef; key?: string }
  | { path: string; from: 'volume'; volume: 'home' | 'state'; writable: true };

const LAB_DIR_IN_HOME = 'lab';

function secretFile(path: string, name: string, what: string): PartFile {
  const key = basename(path);
  return {
    path,
    from: 'secret',
    secret: { name, keys: { [key]: join(LAB_DIR_IN_HOME, path.slice(CLUSTER_LAB_DIR.length + 1)) }, what },
    key,
  };
}

function secretFolder(path: string, name: string, keys: string[], what: string): PartFile {
  const rel = join(LAB_DIR_IN_HOME, path.slice(CLUSTER_LAB_DIR.length + 1));
  return {
    path,
    from: 'secret',
    secret: { name, keys: Object.fromEntries(keys.map((k) => [k, join(rel, k)])), what },
  };
}

/**
 * Every path a part reads besides its program, and where it comes from on a cluster: the plan's
 * mounts (what a Docker container of the part gets), each given its Secret. One Secret per secret
 * so that a part is handed only what it reads: the CA key reaches the security service alone, a
 * part's own credential that part alone.
 */
export function partFiles(lab: ClusterLab, part: PlannedPart): PartFile[] {
  const config: PartConfig = part.config;
  const files: PartFile[] = [{ path: part.launch.configFile, from: 'config' }];
  const secretFor = (path: string): PartFile | undefined => {
    if (path === join(CLUSTER_LAB_DIR, 'lab-token'))
      return secretFile(path, 'trusted-ms-lab-token', "the lab token: the CLI's admin credential");
    if (path === join(CLUSTER_LAB_DIR, 'seal-key'))
      return secretFile(path, 'trusted-ms-seal-key', 'the key that seals session keys for the gateway');
    if (path === join(CLUSTER_LAB_DIR, 'ticket-key.pem'))
      return secretFile(path, 'trusted-ms-ticket-key', "the security service's ticket-signing key");
    if (path === lab.plan.caFile)
      return secretFile(path, 'trusted-ms-ca-cert', "the lab CA's certificate (links:mtls)");
    if (path === lab.plan.caDir)
      return secretFolder(path, 'trusted-ms-ca', [CA_CERT_FILE, CA_KEY_FILE], 'the lab CA, key included');
    if (path === partCredentialIndexFileOf(CLUSTER_LAB_DIR))
      return secretFile(path, 'trusted-ms-credential-index', "the digests of every part's credential");
    for (const p of lab.plan.credentialParts)
      if (path === partCredentialFileOf(CLUSTER_LAB_DIR, p))
        return secretFile(path, `trusted-ms-credential-${p}`, `${p}'s own credential`);
    for (const p of lab.parts) {
      const identityDir =
        p.config.kind === 'service'
          ? p.config.identityDir
          : p.config.kind === 'gateway'
            ? (p.config.identityDir ?? p.config.edgeIdentityDir)
            : undefined;
      if (path === identityDir)
        return secretFolder(
          path,
          `trusted-ms-identity-${p.config.part}`,
          [IDENTITY_CERT_FILE, IDENTITY_KEY_FILE],
          `${p.config.part}'s mTLS identity, issued by the security service after attestation`,
        );
    }
    return undefined;
  };

  if (config.kind === 'security') {
    // The store's single writer mounts the whole home; on a cluster that is a volume of its own,
    // with the secrets it reads placed inside it.
    files.push({ path: CLUSTER_HOME, from: 'volume', volume: 'home', writable: true });
    for (const path of [
      config.labTokenFile,
      config.sealKeyFile,
      config.ticketKeyFile,
      config.caDir,
      config.partCredentialIndexFile,
    ]) {
      if (path === undefined) continue;
      files.push(required(secretFor(path), config.part, path));
    }
    return files;
  }
  for (const mount of part.launch.mounts ?? []) {
    if (mount.path === part.launch.configFile) continue;
    if (mount.writable === true) {
      files.push({ path: mount.path, from: 'volume', volume: 'state', writable: true });
      continue;
    }
    files.push(required(secretFor(mount.path), config.part, mount.path));
  }
  return files;
}

function required(file: PartFile | undefined, part: string, path: string): PartFile {
  // A path the plan mounts that no Secret stands for would be a part left without what it reads.
  if (file === undefined) throw new Error(`${part} reads ${path}, which no exported Secret provides`);
  return file;
}

/** Every Secret the exported parts read, once each, with the parts that read it. */
export function secretsOf(lab: ClusterLab): { secret: SecretRef; readBy: string[] }[] {
  const byName = new Map<string, { secret: SecretRef; readBy: string[] }>();
  for (const part of lab.parts) {
    for (const f of partFiles(lab, part)) {
      if (f.from !== 'secret') continue;
      const entry = byName.get(f.secret.name) ?? { secret: f.secret, readBy: [] };
      entry.readBy.push(part.config.part);
      byName.set(f.secret.name, entry);
    }
  }
  return [...byName.values()];
}

/** The folders a part writes: its volumes. */
export function writableDirsOf(lab: ClusterLab, part: PlannedPart): string[] {
  return partFiles(lab, part).flatMap((f) => (f.from === 'volume' ? [f.path] : []));
}
