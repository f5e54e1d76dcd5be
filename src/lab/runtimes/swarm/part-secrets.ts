import { randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import type Dockerode from 'dockerode';
import { engineStatus, LABEL } from '../docker/engine.js';

type Mount = { path: string; writable?: boolean };

/** What a task reads of the lab home: files as Swarm secrets, the rest bind-mounted. */
export interface TaskFiles {
  secrets: Dockerode.SecretReference[];
  mounts: Dockerode.MountSettings[];
}

/**
 * The host files a service reads (its config, the CA certificate, its part credential, the lab
 * token where the posture hands it one) become Swarm secrets, mounted read-only (0400, the part's
 * own user) at the same path they have here, so the part finds them where its config says: they
 * are kept by the engine, not in an image layer, and not in the environment. A directory (the
 * identity the watchman renews at half-life, in place: a Swarm secret cannot change) and
 * anything the part writes stay bind mounts, as on Docker. Each start makes secrets of its own
 * (a restart may bring a new config); `removeServiceSecrets` removes them with the service.
 */
export async function taskFiles(
  docker: Dockerode,
  opts: { labId: string; part: string; mounts: Mount[]; uid: number; gid: number },
): Promise<TaskFiles> {
  const secrets: Dockerode.SecretReference[] = [];
  const mounts: Dockerode.MountSettings[] = [];
  const run = randomBytes(4).toString('hex');
  for (const [i, m] of opts.mounts.entries()) {
    const isFile = await stat(m.path).then(
      (s) => s.isFile(),
      () => false,
    );
    if (!isFile || m.writable === true) {
      mounts.push({ Type: 'bind', Source: m.path, Target: m.path, ReadOnly: m.writable !== true });
      continue;
    }
    const name = `tms-${opts.labId}-${opts.part}-${run}-${i}`;
    const created = await docker.createSecret({
      Name: name,
      Data: (await readFile(m.path)).toString('base64'),
      Labels: { [LABEL.lab]: opts.labId, [LABEL.part]: opts.part },
    } as object);
    secrets.push({
      SecretID: (created as { id: string }).id,
      SecretName: name,
      File: { Name: m.path, UID: String(opts.uid), GID: String(opts.gid), Mode: 0o400 },
    });
  }
  return { secrets, mounts };
}

/** The secrets a service's spec names, removed (once its tasks are gone); gone already is fine. */
export async function removeSecrets(docker: Dockerode, ids: readonly string[]): Promise<void> {
  for (const id of ids) {
    try {
      await docker.getSecret(id).remove();
    } catch (err) {
      if (engineStatus(err) !== 404) throw err;
    }
  }
}

/** Every secret of the lab (or of every lab), removed: after its services. */
export async function removeLabSecrets(docker: Dockerode, labId: string | undefined): Promise<string[]> {
  const found = await docker.listSecrets({
    filters: { label: [labId === undefined ? LABEL.lab : `${LABEL.lab}=${labId}`] },
  });
  await removeSecrets(
    docker,
    found.map((s) => s.ID),
  );
  return found.map((s) => s.Spec?.Name ?? s.ID);
}
