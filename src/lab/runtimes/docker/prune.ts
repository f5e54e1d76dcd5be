import type Dockerode from 'dockerode';
import { idempotent, LABEL } from './engine.js';

export interface PruneResult {
  /** image tags (or ids, for untagged ones) removed */
  removed: string[];
  /** lab images kept: the newest unless `all`, and any a container still uses */
  kept: string[];
  /** builder containers left by an interrupted image build, removed */
  builders: number;
  reclaimedBytes: number;
}

type ImageInfo = Dockerode.ImageInfo;

function names(image: ImageInfo): string[] {
  const tags = (image.RepoTags ?? []).filter((t) => t !== '<none>:<none>');
  return tags.length > 0 ? tags : [image.Id];
}

/**
 * Removes the images trusted-ms built that nothing uses any more. Every change to the compiled lab
 * is a new content-addressed lab image, so a working copy leaves one behind per build; the engine
 * has no registry to pull them back from, so the newest lab image (and the node image it was
 * committed from) is kept unless `all`. An image a container (of any state) still uses is never
 * removed: the engine refuses, and that refusal is reported as kept, not as an error.
 */
export async function pruneLabImages(docker: Dockerode, opts: { all?: boolean } = {}): Promise<PruneResult> {
  const builders = await docker.listContainers({
    all: true,
    filters: { label: [`${LABEL.image}=builder`] },
  });
  for (const b of builders) await idempotent(() => docker.getContainer(b.Id).remove({ force: true }));

  // A Swarm lab's code images (labelled with their lab) belong to that lab, which removes them at
  // `lab down`: one committed a moment ago is not used by any container until its task starts, and
  // removing it then failed the service's start ("No such image", seen with a prune run meanwhile).
  const images = (await docker.listImages({ filters: { label: [LABEL.image] } })).filter(
    (i) => i.Labels?.[LABEL.lab] === undefined,
  );
  const used = new Set((await docker.listContainers({ all: true })).map((c) => c.ImageID));
  const labImages = images
    .filter((i) => i.Labels?.[LABEL.image] === 'lab')
    .sort((a, b) => b.Created - a.Created);
  const keep = new Set<string>();
  const newest = labImages[0];
  if (newest && !opts.all) {
    keep.add(newest.Id);
    if (newest.ParentId) keep.add(newest.ParentId);
  }
  for (const i of images) if (used.has(i.Id)) keep.add(i.Id);
  // a lab image kept (by a container or as the newest) keeps its node image
  for (const i of labImages) if (keep.has(i.Id) && i.ParentId) keep.add(i.ParentId);

  const result: PruneResult = { removed: [], kept: [], builders: builders.length, reclaimedBytes: 0 };
  // lab images first: a node image cannot go while an image committed from it remains
  const order = [...labImages, ...images.filter((i) => i.Labels?.[LABEL.image] !== 'lab')];
  for (const image of order) {
    if (keep.has(image.Id)) {
      if (image.Labels?.[LABEL.image] === 'lab') result.kept.push(...names(image));
      continue;
    }
    try {
      await docker.getImage(image.Id).remove({ force: false, noprune: false });
      result.removed.push(...names(image));
      result.reclaimedBytes += image.Size;
    } catch (err) {
      // 409: in use or a parent of an image this prune does not own; leave it
      if ((err as { statusCode?: number }).statusCode !== 409) throw err;
      if (image.Labels?.[LABEL.image] === 'lab') result.kept.push(...names(image));
    }
  }
  return result;
}
