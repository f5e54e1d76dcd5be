import type Dockerode from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectEngine, LABEL } from '../../src/lab/runtimes/docker/engine.js';
import { ensureImages } from '../../src/lab/runtimes/docker/images.js';
import { pruneLabImages } from '../../src/lab/runtimes/docker/prune.js';

const TEST_LABEL = 'trusted-ms.test';
/** Skipped loudly without an engine (see docker.e2e.test.ts); under CI=true that file fails instead. */
const docker = await connectEngine();
if (!docker) console.warn('\n!!! SKIPPED: lab prune on Docker (no Docker engine answers).\n');
let labTag: string;
const made: Dockerode.Container[] = [];

async function containerOf(image: string, labels: Record<string, string>): Promise<Dockerode.Container> {
  const c = await (docker as Dockerode).createContainer({ Image: image, Cmd: ['-e', '0'], Labels: labels });
  made.push(c);
  return c;
}

async function tags(): Promise<string[]> {
  const images = await (docker as Dockerode).listImages({ filters: { label: [LABEL.image] } });
  return images.flatMap((i) => i.RepoTags ?? []);
}

describe.runIf(docker)('lab prune: unused lab images go, the newest and the used stay', () => {
  beforeAll(async () => {
    if (!docker) return;
    labTag = (await ensureImages(docker)).lab;
    // the current lab image is in use by a (never started) container: prune must keep it
    await containerOf(labTag, { [TEST_LABEL]: 'prune' });
    // two lab images newer than it, a second apart (the engine's Created is in whole seconds)
    for (const name of ['prune-older', 'prune-newer']) {
      const c = await containerOf(labTag, { [TEST_LABEL]: 'prune' });
      await c.commit({ repo: 'trusted-ms-lab', tag: name });
      await new Promise((r) => setTimeout(r, 1100));
    }
    // what an interrupted image build leaves behind
    await containerOf(labTag, { [LABEL.image]: 'builder', [TEST_LABEL]: 'prune' });
  });

  afterAll(async () => {
    for (const c of made) await c.remove({ force: true }).catch(() => undefined);
    for (const t of ['trusted-ms-lab:prune-older', 'trusted-ms-lab:prune-newer'])
      await docker
        ?.getImage(t)
        .remove()
        .catch(() => undefined);
  });

  it('keeps the newest and the used, removes the older one and the builder', async () => {
    if (!docker) throw new Error('no engine');
    const result = await pruneLabImages(docker);
    expect(result.removed).toContain('trusted-ms-lab:prune-older');
    expect(result.kept).toEqual(expect.arrayContaining(['trusted-ms-lab:prune-newer', labTag]));
    expect(result.builders).toBeGreaterThanOrEqual(1);
    const now = await tags();
    expect(now).not.toContain('trusted-ms-lab:prune-older');
    expect(now).toEqual(expect.arrayContaining(['trusted-ms-lab:prune-newer', labTag]));
    const builders = await docker.listContainers({
      all: true,
      filters: { label: [`${LABEL.image}=builder`] },
    });
    expect(builders).toHaveLength(0);
  });

  it('with all, removes the newest too, never one in use', async () => {
    if (!docker) throw new Error('no engine');
    const result = await pruneLabImages(docker, { all: true });
    expect(result.removed).toContain('trusted-ms-lab:prune-newer');
    expect(result.kept).toContain(labTag);
    expect(await tags()).toContain(labTag);
  });
});
