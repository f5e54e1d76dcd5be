import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { readFile, realpath } from 'node:fs/promises';
import { join } from 'node:path';
import type Dockerode from 'dockerode';
import { execa } from 'execa';
import { hashDirectory } from '../../../attestation/tree-hash.js';
import { TrustedMsError } from '../../../errors.js';
import { packageRoot } from '../../../paths.js';
import { engineStatus, idempotent, LABEL } from './engine.js';
import { fileEntry, packTar, type TarEntry, treeEntries } from './tar.js';

/** Where the lab's compiled code lives in the lab image. */
export const IMAGE_ROOT = '/opt/trusted-ms';
/** Where Node is in every lab image. */
export const IMAGE_NODE = '/usr/bin/node';

export interface LabImages {
  /** Node and its libraries only: what a sample service needs besides its own code folder */
  node: string;
  /** where Node came from: the configured base image, or this host's binary (FROM scratch) */
  base: { configured?: string; used: 'configured' | 'scratch' };
  /** the node image plus the compiled lab (dist/src, dist/lab) and its run-time node_modules */
  lab: string;
  built: string[];
  durationMs: number;
}

/**
 * The lab's two images, built here without a registry and cached by a content hash of what goes
 * in: a second `lab up` finds them and builds nothing.
 *
 * - node: `FROM scratch` + this host's `node` binary + the shared libraries `ldd` lists for it,
 *   imported as one root filesystem (importImage).
 * - lab: a container of the node image gets the compiled code by putArchive and is committed.
 */
export async function ensureImages(
  docker: Dockerode,
  progress: (step: string) => void = () => undefined,
  opts: { baseImage?: string } = {},
): Promise<LabImages> {
  const t0 = Date.now();
  const built: string[] = [];
  const configured = opts.baseImage?.trim() || undefined;
  // A reference as Docker spells one (name[:tag][@digest]); it also goes into a LABEL line.
  if (configured && !/^[a-z0-9][\w.\-/]*(:[\w.-]+)?(@sha256:[a-f0-9]{64})?$/.test(configured)) {
    throw new TrustedMsError('INVALID_INPUT', `${JSON.stringify(configured)} is not an image reference`, {
      actions: ['give a local image as name[:tag], e.g. --base-image node:24-slim'],
    });
  }
  let node: string | undefined;
  if (configured) {
    node = await ensureNodeImageFromBase(docker, configured, progress, built);
    // No registry to pull from here: a base image that is not already local is not an error.
    if (!node)
      progress(`base image ${configured} is not present locally: using the host's Node (FROM scratch)`);
  }
  const base: LabImages['base'] = {
    ...(configured ? { configured } : {}),
    used: node ? 'configured' : 'scratch',
  };
  node ??= await ensureNodeImage(docker, progress, built);
  const lab = await ensureLabImage(docker, node, progress, built);
  return { node, base, lab, built, durationMs: Date.now() - t0 };
}

async function exists(docker: Dockerode, tag: string): Promise<boolean> {
  try {
    await docker.getImage(tag).inspect();
    return true;
  } catch (err) {
    if (engineStatus(err) === 404) return false;
    throw err;
  }
}

function sha256File(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(file)
      .on('error', reject)
      .on('data', (c) => h.update(c))
      .on('end', () => resolve(h.digest('hex')));
  });
}

/** The shared libraries the dynamic linker loads for `binary`, as `ldd` lists them. */
async function sharedLibraries(binary: string): Promise<string[]> {
  const { stdout, exitCode } = await execa('ldd', [binary], { reject: false });
  if (exitCode !== 0) return []; // a static binary
  const libs = new Set<string>();
  for (const line of stdout.split('\n')) {
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)/.exec(line);
    if (m?.[1]) libs.add(m[1]);
  }
  return [...libs].sort();
}

async function ensureNodeImage(docker: Dockerode, progress: (s: string) => void, built: string[]) {
  const nodeBinary = await realpath(process.execPath);
  const libs = await sharedLibraries(nodeBinary);
  const files: TarEntry[] = [
    await fileEntry(IMAGE_NODE.slice(1), nodeBinary, 0o755),
    ...(await Promise.all(libs.map((l) => fileEntry(l.slice(1), l)))),
  ];
  const h = createHash('sha256').update('trusted-ms node image v1\n');
  for (const f of files) if (f.type === 'file') h.update(`${f.name} ${f.mode} ${await sha256File(f.from)}\n`);
  const tag = `trusted-ms-node:${h.digest('hex').slice(0, 16)}`;
  if (await exists(docker, tag)) return tag;

  progress(`building the node image (${process.version}, ${libs.length} libraries)`);
  const t0 = Date.now();
  const dirs = new Set<string>(['tmp', 'srv', 'opt', 'usr', 'usr/bin']);
  for (const f of files) {
    const parts = f.name.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  const entries: TarEntry[] = [
    ...[...dirs]
      .sort()
      .map((name): TarEntry => ({ type: 'directory', name, mode: name === 'tmp' ? 0o1777 : 0o755 })),
    ...files,
  ];
  const [repo, version] = tag.split(':') as [string, string];
  const stream = await docker.importImage(packTar(entries), {
    repo,
    tag: version,
    changes: [`LABEL ${LABEL.image}=node`, `ENTRYPOINT ["${IMAGE_NODE}"]`, 'WORKDIR /'],
  } as object);
  await followProgress(docker, stream as unknown as NodeJS.ReadableStream);
  if (!(await exists(docker, tag))) throw new TrustedMsError('LAB_START_FAILED', `importing ${tag} failed`);
  built.push(tag);
  progress(`built ${tag} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return tag;
}

/**
 * The node image on top of a configured base image (e.g. `node:24-slim`) that is present locally,
 * or undefined when it is not. The base's own Node (found on its PATH) runs the parts; the tag
 * follows the base's image id, so a re-tagged base gets a new image. Labels record the base.
 */
async function ensureNodeImageFromBase(
  docker: Dockerode,
  baseRef: string,
  progress: (s: string) => void,
  built: string[],
): Promise<string | undefined> {
  let baseId: string;
  try {
    baseId = (await docker.getImage(baseRef).inspect()).Id;
  } catch (err) {
    if (engineStatus(err) === 404) return undefined;
    throw err;
  }
  const h = createHash('sha256').update(`trusted-ms node image from base v1\n${baseId}\n`);
  const tag = `trusted-ms-node:base-${h.digest('hex').slice(0, 16)}`;
  if (await exists(docker, tag)) return tag;

  progress(`building the node image from the base image ${baseRef}`);
  const t0 = Date.now();
  const builder = await docker.createContainer({
    Image: baseRef,
    Entrypoint: ['node'],
    Cmd: ['-e', '0'],
    Labels: { [LABEL.image]: 'builder' },
  });
  try {
    // The folders the parts use, whatever the base holds.
    const dirs: TarEntry[] = ['opt', 'srv', 'tmp'].map((name) => ({
      type: 'directory',
      name,
      mode: name === 'tmp' ? 0o1777 : 0o755,
    }));
    await builder.putArchive(packTar(dirs), { path: '/' });
    const [repo, version] = tag.split(':') as [string, string];
    await builder.commit({
      repo,
      tag: version,
      changes: [
        `LABEL ${LABEL.image}=node ${LABEL.baseImage}="${baseRef}" ${LABEL.baseImageId}=${baseId}`,
        // The base's node, wherever its PATH puts it; its own entrypoint script is not wanted.
        'ENTRYPOINT ["node"]',
        'CMD []',
        'WORKDIR /',
      ],
    } as object);
  } finally {
    await idempotent(() => builder.remove({ force: true }));
  }
  built.push(tag);
  progress(`built ${tag} from ${baseRef} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return tag;
}

/** Packages the lab's parts never load: the Engine API client is the CLI's, on this host. */
const HOST_ONLY = new Set(['dockerode', 'tar-stream']);

interface LockPackage {
  version?: string;
  integrity?: string;
  link?: boolean;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

/**
 * The run-time packages the parts need, as package-lock.json resolves them: the closure of
 * package.json's dependencies (minus the host-only ones) by Node's lookup through nested
 * node_modules folders, present on disk.
 */
async function runtimePackages(root: string): Promise<{ path: string; id: string }[]> {
  const lock = JSON.parse(await readFile(join(root, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, LockPackage>;
  };
  const resolve = (from: string, name: string): string | undefined => {
    let base = from;
    for (;;) {
      const candidate = base === '' ? `node_modules/${name}` : `${base}/node_modules/${name}`;
      if (lock.packages[candidate]) return candidate;
      if (base === '') return undefined;
      const i = base.lastIndexOf('/node_modules/');
      base = i === -1 ? '' : base.slice(0, i);
    }
  };
  const seen = new Set<string>();
  const visit = (from: string, deps: Record<string, string> | undefined): void => {
    for (const name of Object.keys(deps ?? {})) {
      if (from === '' && HOST_ONLY.has(name)) continue;
      const path = resolve(from, name);
      if (!path || seen.has(path) || !existsSync(join(root, path))) continue;
      seen.add(path);
      const pkg = lock.packages[path] as LockPackage;
      visit(path, { ...pkg.dependencies, ...pkg.optionalDependencies });
    }
  };
  visit('', lock.packages['']?.dependencies);
  return [...seen].sort().map((path) => {
    const p = lock.packages[path] as LockPackage;
    return { path, id: `${path}@${p.version ?? ''} ${p.integrity ?? ''}` };
  });
}

async function ensureLabImage(
  docker: Dockerode,
  nodeTag: string,
  progress: (s: string) => void,
  built: string[],
) {
  const root = packageRoot();
  const distSrc = join(root, 'dist', 'src');
  const distLab = join(root, 'dist', 'lab');
  if (!existsSync(distSrc) || !existsSync(distLab)) {
    throw new TrustedMsError('LAB_START_FAILED', 'the compiled lab is missing', {
      actions: ['build first: npm run build'],
    });
  }
  const packages = await runtimePackages(root);
  const h = createHash('sha256')
    .update(`trusted-ms lab image v1\n${nodeTag}\n`)
    .update(`${(await hashDirectory(distSrc)).hash}\n${(await hashDirectory(distLab)).hash}\n`)
    .update(
      `${(await hashDirectory(join(root, 'fixtures'))).hash}\n${(await hashDirectory(join(root, 'lab'))).hash}\n`,
    )
    .update(await readFile(join(root, 'package.json')));
  for (const p of packages) h.update(`${p.id}\n`);
  const tag = `trusted-ms-lab:${h.digest('hex').slice(0, 16)}`;
  if (await exists(docker, tag)) return tag;

  progress(`building the lab image (compiled code + ${packages.length} run-time packages)`);
  const t0 = Date.now();
  const base = IMAGE_ROOT.slice(1);
  const entries: TarEntry[] = [
    { type: 'directory', name: base },
    await fileEntry(`${base}/package.json`, join(root, 'package.json')),
    { type: 'directory', name: `${base}/dist` },
    ...(await treeEntries(distSrc, `${base}/dist/src`)),
    ...(await treeEntries(distLab, `${base}/dist/lab`)),
    // fixtures (default roles) and the lab's definition, which the parts read through packageRoot()
    ...(await treeEntries(join(root, 'fixtures'), `${base}/fixtures`)),
    ...(await treeEntries(join(root, 'lab'), `${base}/lab`)),
    { type: 'directory', name: `${base}/node_modules` },
  ];
  const dirs = new Set<string>();
  for (const p of packages) {
    const parts = p.path.split('/');
    for (let i = 2; i < parts.length; i++) {
      const d = parts.slice(0, i).join('/');
      if (!dirs.has(d) && d !== 'node_modules') {
        dirs.add(d);
        entries.push({ type: 'directory', name: `${base}/${d}` });
      }
    }
    entries.push(...(await treeEntries(join(root, p.path), `${base}/${p.path}`, ['node_modules'])));
  }
  const builder = await docker.createContainer({
    Image: nodeTag,
    Cmd: ['-e', '0'],
    Labels: { [LABEL.image]: 'builder' },
  });
  try {
    await builder.putArchive(packTar(entries), { path: '/' });
    const [repo, version] = tag.split(':') as [string, string];
    await builder.commit({ repo, tag: version, changes: [`LABEL ${LABEL.image}=lab`] } as object);
  } finally {
    await idempotent(() => builder.remove({ force: true }));
  }
  built.push(tag);
  progress(`built ${tag} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return tag;
}

function followProgress(docker: Dockerode, stream: NodeJS.ReadableStream): Promise<void> {
  return new Promise((resolve, reject) => {
    docker.modem.followProgress(stream, (err: Error | null, output: { error?: string }[]) => {
      const failed = output?.find((o) => o.error);
      if (err || failed) reject(err ?? new Error(failed?.error));
      else resolve();
    });
  });
}
