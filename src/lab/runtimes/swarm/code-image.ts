import { randomBytes } from 'node:crypto';
import type Dockerode from 'dockerode';
import { idempotent, LABEL } from '../docker/engine.js';
import { packTar, treeEntries } from '../docker/tar.js';

/**
 * A service's code as an image of its own: the node image plus its code folder at /srv/app, put
 * in by the archive API as the Docker runtime puts it into a container, then committed. A Swarm
 * task is created by the engine from an image, so the code must be in the image: the copy each
 * task runs is then the same immutable tree, whichever container the engine starts, and what
 * attestation reads from a task's container is what it runs.
 *
 * `beforeCommit` sees the builder container with the code in place (not started): where a start
 * measures the code it is about to run, as the Docker runtime's beforeRun does.
 */
export async function buildCodeImage(
  docker: Dockerode,
  opts: {
    nodeImage: string;
    labId: string;
    /** the image's repository: the service's name in the lab */
    repo: string;
    appDir: string;
    beforeCommit?: (builderId: string) => Promise<void>;
  },
): Promise<string> {
  const builder = await docker.createContainer({
    Image: opts.nodeImage,
    Cmd: ['-e', '0'],
    Labels: { [LABEL.image]: 'builder', [LABEL.lab]: opts.labId },
  });
  try {
    await builder.putArchive(packTar(await treeEntries(opts.appDir, 'app')), { path: '/srv' });
    await opts.beforeCommit?.(builder.id);
    const tag = randomBytes(6).toString('hex');
    await builder.commit({
      repo: opts.repo,
      tag,
      // The lab's label: `lab down` removes the lab's code images with its services.
      changes: [`LABEL ${LABEL.image}=code`, `LABEL ${LABEL.lab}=${opts.labId}`],
    } as object);
    return `${opts.repo}:${tag}`;
  } finally {
    await idempotent(() => builder.remove({ force: true }));
  }
}

/** Every code image of the lab (or of every lab), removed once no container uses it. */
export async function removeCodeImages(docker: Dockerode, labId: string | undefined): Promise<string[]> {
  const images = await docker.listImages({
    filters: { label: [`${LABEL.image}=code`, labId === undefined ? LABEL.lab : `${LABEL.lab}=${labId}`] },
  });
  const removed: string[] = [];
  for (const image of images) {
    await idempotent(() => docker.getImage(image.Id).remove({ force: true }));
    removed.push(image.RepoTags?.[0] ?? image.Id.slice(7, 19));
  }
  return removed;
}
